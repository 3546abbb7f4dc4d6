// HDF5's filter pipeline undone here: Fletcher-32, shuffle, deflate and lzf (h5py's filter
// 32000), outside libhdf5's lock.
#include "io/hdf5/filters.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "io/codecs.hpp"
#include "mmc/error.hpp"

namespace mmc::detail {
namespace {

// A stage whose output size the stored bytes do not tell (it restores the size that entered it).
bool compresses(H5Z_filter_t id) { return id == H5Z_FILTER_DEFLATE || id == kFilterLzf; }

// HDF5's Fletcher-32 (H5_checksum_fletcher32): sums of big-endian 16-bit words with end-around
// carry, an odd last byte taken as the high byte of a word.
std::uint32_t fletcher32(const std::byte* data, std::size_t n) {
  std::uint32_t a = 0, b = 0;
  std::size_t words = n / 2;
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  // Folded every 360 words, as libhdf5 does: the same blocks give the same sums bit for bit.
  while (words > 0) {
    const std::size_t block = std::min<std::size_t>(words, 360);
    words -= block;
    for (std::size_t i = 0; i < block; ++i, p += 2) {
      a += (static_cast<std::uint32_t>(p[0]) << 8) | p[1];
      b += a;
    }
    a = (a & 0xffff) + (a >> 16);
    b = (b & 0xffff) + (b >> 16);
  }
  if (n % 2 != 0) {
    a += static_cast<std::uint32_t>(p[0]) << 8;
    b += a;
    a = (a & 0xffff) + (a >> 16);
    b = (b & 0xffff) + (b >> 16);
  }
  a = (a & 0xffff) + (a >> 16);
  b = (b & 0xffff) + (b >> 16);
  return (b << 16) | a;
}

}  // namespace

// Scratch buffers of one thread, reused across chunks (a chunk's worth each).
Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}

// Undoes the pipeline on one stored chunk: filters in reverse order, skipping those whose bit
// is set in `mask` (HDF5 skipped them when writing, e.g. deflate that did not shrink the chunk).
// Throws Error(Corrupt) naming `what` for bytes that do not decode to exactly out_n bytes.
void decode_pipeline(const std::vector<FilterStep>& filters, std::uint32_t mask,
                     const std::byte* stored, std::size_t n, std::byte* out, std::size_t out_n,
                     const std::string& what) {
  const std::size_t nf = filters.size();
  const auto skipped = [&](std::size_t i) { return ((mask >> i) & 1u) != 0; };
  // in_size[i]: bytes that entered filter i when writing (known up to the first deflate).
  std::vector<std::size_t> in_size(nf + 1);
  std::size_t size = out_n;
  bool known = true;
  for (std::size_t i = 0; i < nf; ++i) {
    in_size[i] = known ? size : 0;
    if (skipped(i)) continue;
    if (filters[i].id == H5Z_FILTER_FLETCHER32) size += 4;
    if (compresses(filters[i].id)) known = false;
  }
  if (known && n != size) {
    throw_error(ErrorCode::Corrupt, what + ": stored chunk has " + std::to_string(n) +
                                        " bytes, its filters leave " + std::to_string(size));
  }
  // The last stage that moves bytes writes straight into `out` when its result is the chunk.
  std::size_t last_moving = nf;
  for (std::size_t i = nf; i-- > 0;) {
    if (!skipped(i) && filters[i].id != H5Z_FILTER_FLETCHER32) last_moving = i;
  }
  Scratch& scratch = thread_scratch();
  const std::byte* cur = stored;
  bool in_a = false;  // which scratch buffer the next stage writes
  for (std::size_t i = nf; i-- > 0;) {
    if (skipped(i)) continue;
    const FilterStep& f = filters[i];
    if (f.id == H5Z_FILTER_FLETCHER32) {
      if (n < 4)
        throw_error(ErrorCode::Corrupt, what + ": chunk too short for its Fletcher-32 sum");
      n -= 4;
      const auto* s = reinterpret_cast<const unsigned char*>(cur + n);
      const std::uint32_t stored_sum =
          s[0] | (s[1] << 8) | (s[2] << 16) | (static_cast<std::uint32_t>(s[3]) << 24);
      const std::uint32_t sum = fletcher32(cur, n);
      // libhdf5 also accepts the sum with the bytes of each 16-bit half swapped, as HDF5
      // before 1.6.3 wrote it on little-endian machines.
      const std::uint32_t swapped = ((sum & 0x00ff00ffu) << 8) | ((sum >> 8) & 0x00ff00ffu);
      if (stored_sum != sum && stored_sum != swapped) {
        throw_error(ErrorCode::Corrupt, what +
                                            ": Fletcher-32 checksum mismatch (the chunk's bytes "
                                            "are damaged)");
      }
      continue;
    }
    const std::size_t target = compresses(f.id) ? in_size[i] : n;
    if (compresses(f.id) && target == 0 && !(f.id == kFilterLzf && n == 0)) {
      throw_error(ErrorCode::Internal, what + ": decompressed size unknown");
    }
    std::byte* dst;
    if (i == last_moving && target == out_n) {
      dst = out;
    } else {
      std::vector<std::byte>& buf = in_a ? scratch.a : scratch.b;
      if (buf.size() < target) buf.resize(target);
      dst = buf.data();
      in_a = !in_a;
    }
    if (f.id == H5Z_FILTER_DEFLATE) {
      detail::zlib_decode(cur, n, dst, target, false, what);
    } else if (f.id == kFilterLzf) {
      detail::lzf_decode(cur, n, dst, target, what);
    } else {  // shuffle; trailing bytes that make no whole element are stored as they are
      const std::size_t size_of = std::max<std::size_t>(f.shuffle_size, 1);
      const std::size_t elems = n / size_of;
      if (size_of > 1 && elems > 1) {
        detail::byte_unshuffle(cur, dst, elems, size_of);
        std::memcpy(dst + elems * size_of, cur + elems * size_of, n - elems * size_of);
      } else {
        std::memcpy(dst, cur, n);
      }
    }
    cur = dst;
    n = target;
  }
  if (n != out_n) {
    throw_error(ErrorCode::Corrupt, what + ": chunk decodes to " + std::to_string(n) +
                                        " bytes, expected " + std::to_string(out_n));
  }
  if (cur != out) std::memcpy(out, cur, n);
}

std::string filter_name(H5Z_filter_t id, const char* name_in_file) {
  switch (id) {
    case H5Z_FILTER_DEFLATE:
      return "gzip";
    case H5Z_FILTER_SHUFFLE:
      return "shuffle";
    case H5Z_FILTER_FLETCHER32:
      return "fletcher32";
    case H5Z_FILTER_SZIP:
      return "szip";
    case H5Z_FILTER_NBIT:
      return "nbit";
    case H5Z_FILTER_SCALEOFFSET:
      return "scaleoffset";
    case 307:
      return "bzip2";
    case 32000:
      return "lzf";
    case 32001:
      return "blosc";
    case 32004:
      return "lz4";
    case 32015:
      return "zstd";
    default:
      return name_in_file[0] != '\0' ? std::string(name_in_file) : "filter " + std::to_string(id);
  }
}

}  // namespace mmc::detail
