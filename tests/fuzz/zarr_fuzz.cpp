// Fuzz target: a zarr v2 store made of the input. Layout: 2 bytes (little-endian) giving the
// length L of the .zarray text, L bytes of .zarray, then the bytes of chunk (0, ..., 0), stored
// under both the "." and the "/" key spellings.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"

namespace {

// Writes the chunk as "0.0.0" and as "0/0/0" (folders made as needed) for `ndim` axes.
void write_first_chunk(const std::string& store, std::size_t ndim, const std::uint8_t* data,
                       std::size_t n) {
  std::string dotted = "0";
  std::string nested = store;
  for (std::size_t i = 1; i < ndim; ++i) {
    dotted += ".0";
    nested += "/0";
    ::mkdir(nested.c_str(), 0755);
  }
  mmc::fuzz::write_bytes(store + "/" + dotted, data, n);
  if (ndim > 1) mmc::fuzz::write_bytes(nested + "/0", data, n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t meta_len = std::min<std::size_t>(data[0] | (data[1] << 8), size - 2);
  const std::string store = mmc::fuzz::scratch_dir() + "/input.zarr";
  mmc::fuzz::remove_all(store);
  ::mkdir(store.c_str(), 0755);
  mmc::fuzz::write_bytes(store + "/.zarray", data + 2, meta_len);
  try {
    const mmc::AnyArray array = mmc::open_array(store);
    // Too many axes for a folder path of "0/0/.../0": the chunk stays absent (fill value).
    if (array.meta().shape.size() <= 64) {
      write_first_chunk(store, array.meta().shape.size(), data + 2 + meta_len,
                        size - 2 - meta_len);
    }
    mmc::fuzz::read_bounded(array);
    (void)array.chunked()->storage();
  } catch (const mmc::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
