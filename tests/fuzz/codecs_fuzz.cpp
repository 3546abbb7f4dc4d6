// Fuzz target: the chunk decoders of engine/io/codecs.cpp. Layout: 1 byte choosing the decoder
// (zlib, gzip, zstd, blosc, byte unshuffle, lzf), 3 bytes (little-endian) giving the decoded size
// the caller expects, then the encoded bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "io/codecs.hpp"
#include "mmc/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  const int which = data[0] % 6;
  // At most 1 MiB, so each input costs little time.
  const std::size_t out_n =
      (data[1] | (data[2] << 8) | (static_cast<std::size_t>(data[3]) << 16)) % ((1u << 20) + 1);
  const auto* src = reinterpret_cast<const std::byte*>(data + 4);
  const std::size_t n = size - 4;
  // Exactly out_n bytes, so AddressSanitizer sees any write past the end.
  std::vector<std::byte> out(out_n);
  const std::string what = "fuzz chunk";
  try {
    switch (which) {
      case 0:
        mmc::detail::zlib_decode(src, n, out.data(), out_n, false, what);
        break;
      case 1:
        mmc::detail::zlib_decode(src, n, out.data(), out_n, true, what);
        break;
      case 2:
        mmc::detail::zstd_decode(src, n, out.data(), out_n, what);
        break;
      case 3:
        mmc::detail::blosc_decode(src, n, out.data(), out_n, what);
        break;
      case 5:
        mmc::detail::lzf_decode(src, n, out.data(), out_n, what);
        break;
      default: {
        // The element size comes from the decoded-size field's low byte (1..16).
        const std::size_t itemsize = out_n % 16 + 1;
        const std::size_t whole = n - n % itemsize;
        out.assign(whole, std::byte{0});
        mmc::detail::byte_unshuffle(src, out.data(), whole / itemsize, itemsize);
        break;
      }
    }
  } catch (const mmc::Error&) {
    // Bytes that do not decode to out_n bytes are refused: the expected outcome.
  }
  return 0;
}
