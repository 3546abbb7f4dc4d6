// Chunk codecs shared by the zarr and HDF5 drivers: zlib/gzip, zstd, blosc, lzf, CRC-32C and
// HDF5's byte shuffle, over byte buffers.
//
// Every function is thread-safe and fork-safe (no shared state; zstd contexts are per thread).
// Encoders throw Error(InvalidArgument) for a bad level or codec name; decoders write exactly
// out_n bytes into out or throw Error(Corrupt, "<what>: ...") for input that does not decode to
// exactly out_n bytes. Decoders never read outside [src, src + n) nor write outside
// [out, out + out_n), whatever the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mmc::detail {

// zlib stream (zarr "zlib", HDF5 deflate) or gzip format (zarr "gzip"). level: -1 (zlib's
// default) or 0..9. Encoded and decoded with libdeflate (one call over the whole buffer), zlib
// where libdeflate declines (several gzip members, damaged data: zlib's messages).
std::vector<std::byte> zlib_encode(const std::byte* data, std::size_t n, int level, bool gzip);
// Decodes into out[0, out_n); throws Error(Corrupt, "<what>: ...") unless exactly out_n bytes
// come out. Bytes after the end of a zlib stream are ignored (as Python's zlib.decompress
// does); a gzip input may hold several members followed by zero padding (as Python's gzip).
void zlib_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n, bool gzip,
                 const std::string& what);

// zlib_encode, zstd_encode and blosc_encode writing into `out` instead of a new buffer: `out`
// only grows (a writer reuses one per thread, so no chunk pays for fresh pages), and the
// encoded size is returned.
std::size_t zlib_encode_into(const std::byte* data, std::size_t n, int level, bool gzip,
                             std::vector<std::byte>& out);
std::size_t zstd_encode_into(const std::byte* data, std::size_t n, int level,
                             std::vector<std::byte>& out);
std::size_t blosc_encode_into(const std::byte* data, std::size_t n, std::size_t typesize,
                              const std::string& cname, int clevel, int shuffle,
                              std::vector<std::byte>& out);

// LZF (h5py's "lzf" HDF5 filter, 32000): decodes into out[0, out_n); throws Error(Corrupt,
// "<what>: ...") unless the block decodes to exactly out_n bytes.
void lzf_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                const std::string& what);

// A zstd frame with its content size recorded (numcodecs needs it). level: zstd's range
// (ZSTD_minCLevel()..ZSTD_maxCLevel(); 0 means zstd's default).
std::vector<std::byte> zstd_encode(const std::byte* data, std::size_t n, int level);
// Decodes one or more concatenated zstd frames into out[0, out_n).
void zstd_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                 const std::string& what);

// A blosc1 buffer. cname: blosclz, lz4, lz4hc, zlib or zstd (what this libblosc was built with);
// clevel 0..9; shuffle 0 none, 1 byte, 2 bit. n must not exceed BLOSC_MAX_BUFFERSIZE (~2 GiB).
std::vector<std::byte> blosc_encode(const std::byte* data, std::size_t n, std::size_t typesize,
                                    const std::string& cname, int clevel, int shuffle);
// Validates the blosc header against n before decompressing.
void blosc_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                  const std::string& what);

// CRC-32C (Castagnoli), as zarr v3's crc32c codec appends it (little endian) after the bytes
// it covers; ISA-L's crc32_iscsi with the usual initial and final inversion.
std::uint32_t crc32c(const std::byte* data, std::size_t n);

// HDF5's shuffle filter layout: byte k of every element together. in and out must not
// overlap; both hold n_elems * itemsize bytes.
void byte_shuffle(const std::byte* in, std::byte* out, std::size_t n_elems, std::size_t itemsize);
void byte_unshuffle(const std::byte* in, std::byte* out, std::size_t n_elems, std::size_t itemsize);

}  // namespace mmc::detail
