// Raw sources: numpy.memmap(path, dtype, mode, offset, shape, order) as an mmc::Source.
#include <sys/stat.h>

#include <utility>

#include "mmc/error.hpp"
#include "mmc/source.hpp"

namespace mmc {

Source::Source(ArrayMeta meta, MappedFile mapping, std::string kind)
    : meta_(std::move(meta)), mapping_(std::move(mapping)), kind_(std::move(kind)) {}

Source open_raw(const RawSpec& spec, MapMode mode) {
  if (!spec.dtype.is_set()) {
    throw Error(
        ErrorCode::InvalidArgument,
        spec.path + ": no dtype given: a raw file's element type must be said (u8, f32, ...)");
  }
  const std::string what = spec.path + ": shape " + format_shape(spec.shape) + " of " +
                           spec.dtype.name() + " at offset " + std::to_string(spec.offset);
  std::uint64_t nbytes = spec.dtype.itemsize();
  for (const std::int64_t extent : spec.shape) {
    if (extent < 0) {
      throw Error(ErrorCode::InvalidArgument, spec.path + ": negative extent " +
                                                  std::to_string(extent) + " in shape " +
                                                  format_shape(spec.shape));
    }
    nbytes = detail::checked_mul(nbytes, static_cast<std::uint64_t>(extent), what.c_str());
  }
  const std::uint64_t end = detail::checked_add(spec.offset, nbytes, what.c_str());

  // Checked here, not only by MappedFile, for a message in the array's terms.
  struct stat st;
  if (mode != MapMode::Create && ::stat(spec.path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<std::uint64_t>(st.st_size) < end) {
    throw Error(ErrorCode::Corrupt, spec.path + ": shape " + format_shape(spec.shape) + " of " +
                                        spec.dtype.name() + " needs " + std::to_string(end) +
                                        " bytes (" + std::to_string(nbytes) + " of data + offset " +
                                        std::to_string(spec.offset) + "), file has " +
                                        std::to_string(st.st_size) + " bytes");
  }

  MappedFile mapping = MappedFile::open(spec.path, mode, spec.offset, nbytes);
  return Source(ArrayMeta::contiguous(spec.dtype, spec.shape, spec.order), std::move(mapping),
                "raw");
}

}  // namespace mmc
