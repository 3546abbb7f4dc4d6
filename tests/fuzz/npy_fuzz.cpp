// Fuzz target: the input is a whole .npy file, opened (header parsed, data mapped in place) and
// read like any array.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "mmc/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = mmc::fuzz::scratch_dir() + "/input.npy";
  mmc::fuzz::write_bytes(path, data, size);
  try {
    mmc::fuzz::read_bounded(mmc::open_array(path));
  } catch (const mmc::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
