// Fuzz target: a zarr store made of the input. Layout: 2 bytes (little-endian) giving the
// length L of the metadata text, L bytes of metadata, then the bytes of chunk (0, ..., 0) (for
// a sharded v3 array: of shard (0, ..., 0), index included), stored under the "." and the "/"
// key spellings. The metadata is a v3 zarr.json when its text holds "node_type", else a v2
// .zarray.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"

namespace {

// Writes the chunk as "0.0.0" and as "0/0/0" (folders made as needed) for `ndim` axes; v3 keys
// have "c" first ("c.0.0.0", "c/0/0/0"; "c" alone for a 0-d array).
void write_first_chunk(const std::string& store, std::size_t ndim, bool v3,
                       const std::uint8_t* data, std::size_t n) {
  std::string dotted = v3 ? "c" : "";
  std::string nested = store + (v3 ? "/c" : "");
  if (v3) ::mkdir(nested.c_str(), 0755);
  for (std::size_t i = 0; i < ndim; ++i) {
    dotted += dotted.empty() ? "0" : ".0";
    if (i + 1 < ndim) {
      nested += "/0";
      ::mkdir(nested.c_str(), 0755);
    }
  }
  if (ndim == 0 && !v3) dotted = "0";
  mmc::fuzz::write_bytes(store + "/" + dotted, data, n);
  if (ndim > 1 || (v3 && ndim == 1)) mmc::fuzz::write_bytes(nested + "/0", data, n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t meta_len = std::min<std::size_t>(data[0] | (data[1] << 8), size - 2);
  const std::string store = mmc::fuzz::scratch_dir() + "/input.zarr";
  mmc::fuzz::remove_all(store);
  ::mkdir(store.c_str(), 0755);
  const std::string meta(reinterpret_cast<const char*>(data + 2), meta_len);
  const bool v3 = meta.find("node_type") != std::string::npos;
  mmc::fuzz::write_bytes(store + (v3 ? "/zarr.json" : "/.zarray"), data + 2, meta_len);
  try {
    const mmc::AnyArray array = mmc::open_array(store);
    // Too many axes for a folder path of "0/0/.../0": the chunk stays absent (fill value).
    if (array.meta().shape.size() <= 64) {
      write_first_chunk(store, array.meta().shape.size(), v3, data + 2 + meta_len,
                        size - 2 - meta_len);
    }
    mmc::fuzz::read_bounded(array);
    (void)array.chunked()->storage();
  } catch (const mmc::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
