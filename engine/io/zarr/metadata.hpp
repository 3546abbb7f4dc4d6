// zarr v2 metadata (metadata.cpp): the .zarray of a store read and checked, and written for a
// ZarrWriter's spec. Private to engine/io; nlohmann-json stays inside metadata.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/zarr.hpp"

namespace mmc::detail::zarr {

enum class Codec : std::uint8_t { None, Zlib, Gzip, Zstd, Blosc };

struct CodecSpec {
  Codec codec = Codec::None;
  int level = -1;  // -1: not given
  std::string cname;
  int shuffle = 0;
};

// "zlib(level=5)", "blosc(lz4,shuffle=1,clevel=5)", ... for messages and `info`.
std::string describe_codec(const CodecSpec& c);

// What a .zarray says, checked: the array, its chunk shape, one fill element (dtype's byte
// order), the compressor and the chunk key separator ('.' or '/').
struct Metadata {
  ArrayMeta meta;
  Shape chunks;
  std::vector<std::byte> fill;
  CodecSpec codec;
  char separator = '.';
};

// Reads DIR/.zarray (`dir` without a trailing '/'). Throws what open_zarr (mmc/zarr.hpp) says
// it throws for metadata: NotFound when there is no .zarray (saying what `dir` is instead),
// Corrupt naming the field, InvalidArgument for what is not supported.
Metadata read_metadata(const std::string& dir);

// The .zarray text for a store written from `spec` (its fill resolved to one element).
std::string metadata_text(const ZarrSpec& spec);

}  // namespace mmc::detail::zarr
