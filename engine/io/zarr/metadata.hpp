// zarr metadata (metadata.cpp for v2's .zarray, metadata_v3.cpp for v3's zarr.json): read and
// checked into one Metadata, and written for a ZarrWriter's spec. Private to engine/io;
// nlohmann-json stays inside the metadata files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/attributes.hpp"
#include "mmc/zarr.hpp"

namespace mmc::detail::zarr {

// Bytes-to-bytes codecs: v2's compressors, v3's gzip, zstd, blosc and crc32c.
enum class Codec : std::uint8_t { None, Zlib, Gzip, Zstd, Blosc, Crc32c };

struct CodecSpec {
  Codec codec = Codec::None;
  int level = -1;  // -1: not given
  std::string cname;
  int shuffle = 0;
};

// "zlib(level=5)", "blosc(lz4,shuffle=1,clevel=5)", "crc32c", ... for messages and `info`.
std::string describe_codec(const CodecSpec& c);
// The codecs of a chunk joined by '+' ("gzip(level=5)+crc32c"), "none" when there are none.
std::string describe_codecs(const std::vector<CodecSpec>& codecs);

// How a chunk's key is made from its grid coordinates: v2 "0.1.2" (or "0/1/2"), v3's default
// encoding "c/0/1/2" (or "c.0.1.2"). A 0-d array's one chunk is "0" (v2) or "c" (v3 default).
struct KeyEncoding {
  std::string prefix;  // "c" for v3's default encoding, empty otherwise
  char separator = '.';
};

// A v3 sharding_indexed codec: each file (a shard) holds a grid of inner chunks, and an index
// of (offset, nbytes) pairs, u64 each, one pair per inner chunk in C order (both 2^64 - 1 for
// an inner chunk not stored), at the file's end or start, followed by its CRC-32C when asked.
// The most chunks one shard may hold: its index (16 bytes per chunk) is read whole, so 2^20
// chunks make a 16 MiB index; more is refused as hostile or damaged.
inline constexpr std::uint64_t kMaxChunksPerShard = std::uint64_t{1} << 20;

struct Sharding {
  bool enabled = false;  // the array is sharded
  Shape shape;           // shard shape (elements); empty for a 0-d array
  bool index_at_start = false;
  bool index_big_endian = false;
  bool index_crc32c = false;
};

// What a .zarray or zarr.json says, checked: the array, its chunk shape (inner chunks when
// sharded), one fill element (dtype's byte order), the bytes-to-bytes codecs of a chunk in the
// order a writer applied them, the key encoding, and sharding.
struct Metadata {
  int zarr_format = 2;
  ArrayMeta meta;
  Shape chunks;
  std::vector<std::byte> fill;
  std::vector<CodecSpec> codecs;
  KeyEncoding keys;
  Sharding sharding;
  // v3 transposes other than C's and F's order: chunk axis k is stored as array axis
  // permutation[k]; a chunk is put back in C order after decoding. Empty otherwise.
  std::vector<std::int64_t> permutation;
};

// Reads DIR/.zarray, or DIR/zarr.json (`dir` without a trailing '/'). Throws what open_zarr
// (mmc/zarr.hpp) says it throws for metadata: NotFound when there is neither (saying what `dir`
// is instead, listing a group's arrays), Corrupt naming the field, InvalidArgument for what is
// not supported.
Metadata read_metadata(const std::string& dir);
// The v3 half of read_metadata (metadata_v3.cpp): `file` is DIR/zarr.json.
Metadata read_metadata_v3(const std::string& file);

// The .zarray text for a v2 store written from `spec` (its fill resolved to one element).
std::string metadata_text(const ZarrSpec& spec);
// The zarr.json text for a v3 store written from `spec`.
std::string metadata_text_v3(const ZarrSpec& spec);

// The attributes and axis names of the array in `dir` (v2's .zattrs, v3's zarr.json).
ArrayAttributes read_attributes(const std::string& dir, std::size_t ndim);
// v2's .zattrs text for `spec` (its attributes, the names under _ARRAY_DIMENSIONS), or empty
// when it has neither.
std::string zattrs_text(const ZarrSpec& spec);

// The codecs a writer applies for `spec`'s compressor (v2: at most one; v3 as the writer
// writes them).
std::vector<CodecSpec> writer_codecs(const ZarrSpec& spec);

}  // namespace mmc::detail::zarr
