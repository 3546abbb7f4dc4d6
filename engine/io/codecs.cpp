// Chunk codecs over libdeflate (zlib for what it declines), libzstd, libblosc (blosc1 context
// API), liblzf and ISA-L's CRC-32C, plus HDF5's byte shuffle.
#include "io/codecs.hpp"

#include <blosc.h>
#include <isa-l/crc.h>
#include <libdeflate.h>
#include <lzf.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "mmc/error.hpp"

namespace mmc::detail {
namespace {

// zlib counts in uInt (32 bits): big buffers go through in pieces of at most this.
constexpr std::size_t kZlibPiece = UINT_MAX;

std::string bytes_text(std::size_t n) { return std::to_string(n) + " bytes"; }

[[noreturn]] void corrupt(const std::string& what, const std::string& detail) {
  throw_error(ErrorCode::Corrupt, what + ": " + detail);
}

// Owns a z_stream set up for inflate or deflate.
class ZStream {
 public:
  explicit ZStream(bool inflating) : inflating_(inflating) {}
  ZStream(const ZStream&) = delete;
  ZStream& operator=(const ZStream&) = delete;
  ~ZStream() {
    if (!live_) return;
    if (inflating_) {
      inflateEnd(&zs_);
    } else {
      deflateEnd(&zs_);
    }
  }
  z_stream* get() noexcept { return &zs_; }
  void set_live() noexcept { live_ = true; }

 private:
  z_stream zs_{};
  bool inflating_;
  bool live_ = false;
};

// True when every byte of [p, p + n) is zero.
bool all_zero(const std::byte* p, std::size_t n) {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace

namespace {

struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const noexcept { libdeflate_free_compressor(c); }
};
struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const noexcept { libdeflate_free_decompressor(d); }
};

// libdeflate's state, one per thread (and per level for compressors), made on first use.
libdeflate_compressor* thread_deflater(int level) {
  thread_local std::unique_ptr<libdeflate_compressor, CompressorDeleter> by_level[10];
  auto& c = by_level[level];
  if (c == nullptr) c.reset(libdeflate_alloc_compressor(level));
  if (c == nullptr) throw std::bad_alloc();
  return c.get();
}

libdeflate_decompressor* thread_inflater() {
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> d(
      libdeflate_alloc_decompressor());
  if (d == nullptr) throw std::bad_alloc();
  return d.get();
}

// The zlib stream (or gzip member) libdeflate makes of data in one call, into `out` (grown to
// the bound): the same format zlib writes (zlib reads it), 2-3x faster at the same level.
// Returns its size, 0 only if the bound were wrong (the caller then uses zlib).
std::size_t deflate_whole(const std::byte* data, std::size_t n, int level, bool gzip,
                          std::vector<std::byte>& out) {
  libdeflate_compressor* c = thread_deflater(level < 0 ? 6 : level);  // zlib's default is 6
  const std::size_t bound =
      gzip ? libdeflate_gzip_compress_bound(c, n) : libdeflate_zlib_compress_bound(c, n);
  if (out.size() < bound) out.resize(bound);
  return gzip ? libdeflate_gzip_compress(c, data, n, out.data(), bound)
              : libdeflate_zlib_compress(c, data, n, out.data(), bound);
}

// Inflates a whole zlib stream or gzip member with libdeflate when it yields exactly out_n
// bytes and nothing but what zlib_decode also ignores follows it; false otherwise (zlib_decode
// then runs zlib, which handles several gzip members and words every fault).
bool inflate_whole(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                   bool gzip) {
  // A gzip header with its own CRC (FHCRC): libdeflate skips the check zlib makes.
  if (gzip && n > 3 && (static_cast<std::uint8_t>(src[3]) & 0x02) != 0) return false;
  libdeflate_decompressor* d = thread_inflater();
  std::size_t in_used = 0;
  std::size_t produced = 0;
  const libdeflate_result r =
      gzip ? libdeflate_gzip_decompress_ex(d, src, n, out, out_n, &in_used, &produced)
           : libdeflate_zlib_decompress_ex(d, src, n, out, out_n, &in_used, &produced);
  if (r != LIBDEFLATE_SUCCESS || produced != out_n) return false;
  // zlib: bytes after the stream are ignored; gzip: only zero padding may follow the member.
  return !gzip || all_zero(src + in_used, n - in_used);
}

}  // namespace

namespace {

// The same stream through zlib, where libdeflate's bound was too small (never seen).
std::vector<std::byte> zlib_stream(const std::byte* data, std::size_t n, int level, bool gzip) {
  ZStream stream(false);
  z_stream* zs = stream.get();
  const int rc = deflateInit2(zs, level, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY);
  if (rc == Z_MEM_ERROR) throw std::bad_alloc();
  if (rc != Z_OK)
    throw_error(ErrorCode::Internal, "deflateInit2 failed with code " + std::to_string(rc));
  stream.set_live();

  std::vector<std::byte> out(deflateBound(zs, static_cast<uLong>(n)));
  std::size_t in_pos = 0;
  std::size_t out_pos = 0;
  for (;;) {
    if (out_pos == out.size()) out.resize(out.size() + out.size() / 2 + 64);
    const std::size_t in_piece = std::min(n - in_pos, kZlibPiece);
    const std::size_t out_piece = std::min(out.size() - out_pos, kZlibPiece);
    // zlib never writes through next_in; its API simply predates const.
    zs->next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(data + in_pos));
    zs->avail_in = static_cast<uInt>(in_piece);
    zs->next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
    zs->avail_out = static_cast<uInt>(out_piece);
    const int flush = in_pos + in_piece == n ? Z_FINISH : Z_NO_FLUSH;
    const int ret = deflate(zs, flush);
    in_pos += in_piece - zs->avail_in;
    out_pos += out_piece - zs->avail_out;
    if (ret == Z_STREAM_END) break;
    if (ret != Z_OK && ret != Z_BUF_ERROR) {
      throw_error(ErrorCode::Internal, "deflate failed with code " + std::to_string(ret));
    }
  }
  out.resize(out_pos);
  return out;
}

}  // namespace

std::vector<std::byte> zlib_encode(const std::byte* data, std::size_t n, int level, bool gzip) {
  std::vector<std::byte> out;
  out.resize(zlib_encode_into(data, n, level, gzip, out));
  return out;
}

void zlib_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n, bool gzip,
                 const std::string& what) {
  if (inflate_whole(src, n, out, out_n, gzip)) return;
  // Not one whole stream of exactly out_n bytes: zlib, member by member, saying what is wrong.
  const char* fmt = gzip ? "gzip" : "zlib";
  ZStream stream(true);
  z_stream* zs = stream.get();
  const int rc = inflateInit2(zs, gzip ? 15 + 16 : 15);
  if (rc == Z_MEM_ERROR) throw std::bad_alloc();
  if (rc != Z_OK)
    throw_error(ErrorCode::Internal, "inflateInit2 failed with code " + std::to_string(rc));
  stream.set_live();

  std::size_t in_pos = 0;
  std::size_t out_pos = 0;
  // Once out is full, inflate into this byte to find out whether the stream holds more.
  std::byte overflow_probe[1];
  for (;;) {
    const std::size_t in_piece = std::min(n - in_pos, kZlibPiece);
    const bool full = out_pos == out_n;
    const std::size_t out_piece = full ? 1 : std::min(out_n - out_pos, kZlibPiece);
    zs->next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(src + in_pos));
    zs->avail_in = static_cast<uInt>(in_piece);
    zs->next_out = reinterpret_cast<Bytef*>(full ? overflow_probe : out + out_pos);
    zs->avail_out = static_cast<uInt>(out_piece);
    const int ret = inflate(zs, Z_NO_FLUSH);
    const std::size_t produced = out_piece - zs->avail_out;
    in_pos += in_piece - zs->avail_in;
    if (full && produced > 0) {
      corrupt(what,
              std::string(fmt) + " data decodes to more than the expected " + bytes_text(out_n));
    }
    out_pos += produced;
    if (ret == Z_STREAM_END) {
      if (!gzip || in_pos == n) break;
      // Python's gzip reads concatenated members and ignores zero padding after the last.
      const std::size_t rest = n - in_pos;
      if (rest >= 2 && src[in_pos] == std::byte{0x1f} && src[in_pos + 1] == std::byte{0x8b}) {
        if (inflateReset(zs) != Z_OK) corrupt(what, "cannot restart gzip decoding");
        continue;
      }
      if (all_zero(src + in_pos, rest)) break;
      corrupt(what, "gzip data has " + bytes_text(rest) + " of garbage after its end");
    }
    if (ret == Z_BUF_ERROR || (ret == Z_OK && in_pos == n && produced == 0)) {
      // No progress is possible: the input ended before the stream did.
      corrupt(what, std::string(fmt) + " data is truncated (" + bytes_text(n) + " decoded to " +
                        bytes_text(out_pos) + " without reaching the end)");
    }
    if (ret != Z_OK) {
      if (ret == Z_MEM_ERROR) throw std::bad_alloc();
      corrupt(what, std::string("invalid ") + fmt + " data" +
                        (zs->msg != nullptr ? std::string(" (") + zs->msg + ")" : std::string()));
    }
  }
  if (out_pos != out_n) {
    corrupt(what, std::string(fmt) + " data decodes to " + bytes_text(out_pos) + ", expected " +
                      bytes_text(out_n));
  }
}

namespace {

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct DctxDeleter {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

// One context per thread, reused across chunks (creating one costs more than a small chunk).
ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> ctx(ZSTD_createCCtx());
  if (ctx == nullptr) throw std::bad_alloc();
  return ctx.get();
}

ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> ctx(ZSTD_createDCtx());
  if (ctx == nullptr) throw std::bad_alloc();
  return ctx.get();
}

}  // namespace

void lzf_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                const std::string& what) {
  // liblzf counts in unsigned int; h5py never makes a chunk that large.
  if (n > UINT_MAX || out_n > UINT_MAX) {
    throw_error(ErrorCode::Corrupt, what + ": an lzf block of " + std::to_string(n) +
                                        " bytes for " + std::to_string(out_n) +
                                        " is larger than lzf allows");
  }
  if (n == 0 && out_n == 0) return;
  // liblzf checks every literal run and back reference against both buffers: hostile bytes
  // fail (EINVAL, or E2BIG when they would write past out_n), they never reach outside.
  errno = 0;
  const unsigned got =
      lzf_decompress(src, static_cast<unsigned>(n), out, static_cast<unsigned>(out_n));
  if (got == out_n) return;
  const int err = errno;
  const std::string why = got != 0       ? "it gives " + std::to_string(got)
                          : err == E2BIG ? "it gives more"
                                         : "damaged data";
  throw_error(ErrorCode::Corrupt, what + ": lzf block does not decode to " + std::to_string(out_n) +
                                      " bytes (" + why + ")");
}

std::size_t zstd_encode_into(const std::byte* data, std::size_t n, int level,
                             std::vector<std::byte>& out) {
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
    throw_error(ErrorCode::InvalidArgument, "zstd level " + std::to_string(level) +
                                                " is out of range (use 1.." +
                                                std::to_string(ZSTD_maxCLevel()) + ")");
  }
  if (out.size() < ZSTD_compressBound(n)) out.resize(ZSTD_compressBound(n));
  ZSTD_CCtx* cctx = thread_cctx();
  // Parameters stick to a reused context: start from a clean one, with the content size
  // written in the frame header (numcodecs' decoder requires it).
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  const std::size_t r = ZSTD_compress2(cctx, out.data(), out.size(), data, n);
  if (ZSTD_isError(r)) {
    throw_error(ErrorCode::Internal,
                std::string("zstd compression failed: ") + ZSTD_getErrorName(r));
  }
  return r;
}

std::vector<std::byte> zstd_encode(const std::byte* data, std::size_t n, int level) {
  std::vector<std::byte> out;
  out.resize(zstd_encode_into(data, n, level, out));
  return out;
}

void zstd_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                 const std::string& what) {
  // zstd wants a real destination pointer even for an empty output.
  std::byte dummy[1];
  const std::size_t r = ZSTD_decompressDCtx(thread_dctx(), out_n == 0 ? dummy : out, out_n, src, n);
  if (ZSTD_isError(r)) {
    const ZSTD_ErrorCode code = ZSTD_getErrorCode(r);
    if (code == ZSTD_error_dstSize_tooSmall) {
      corrupt(what, "zstd data decodes to more than the expected " + bytes_text(out_n));
    }
    corrupt(what, std::string("invalid zstd data (") + ZSTD_getErrorName(r) + ")");
  }
  if (r != out_n) {
    corrupt(what, "zstd data decodes to " + bytes_text(r) + ", expected " + bytes_text(out_n));
  }
}

std::size_t blosc_encode_into(const std::byte* data, std::size_t n, std::size_t typesize,
                              const std::string& cname, int clevel, int shuffle,
                              std::vector<std::byte>& out) {
  if (clevel < 0 || clevel > 9) {
    throw_error(ErrorCode::InvalidArgument,
                "blosc clevel " + std::to_string(clevel) + " is out of range (use 0..9)");
  }
  if (shuffle < 0 || shuffle > 2) {
    throw_error(ErrorCode::InvalidArgument, "blosc shuffle " + std::to_string(shuffle) +
                                                " is out of range (use 0 none, 1 byte, 2 bit)");
  }
  if (blosc_compname_to_compcode(cname.c_str()) < 0) {
    throw_error(ErrorCode::InvalidArgument, "blosc codec '" + cname +
                                                "' is not available (this libblosc has " +
                                                blosc_list_compressors() + ")");
  }
  if (n > static_cast<std::size_t>(BLOSC_MAX_BUFFERSIZE)) {
    throw_error(ErrorCode::InvalidArgument,
                "blosc cannot compress " + bytes_text(n) + " in one buffer (its limit is " +
                    bytes_text(BLOSC_MAX_BUFFERSIZE) + "); use smaller chunks");
  }
  if (typesize == 0 || typesize > 255) typesize = 1;  // blosc's shuffle needs 1..255
  if (out.size() < n + BLOSC_MAX_OVERHEAD) out.resize(n + BLOSC_MAX_OVERHEAD);
  const int r = blosc_compress_ctx(clevel, shuffle, typesize, n, data, out.data(),
                                   n + BLOSC_MAX_OVERHEAD, cname.c_str(), 0, 1);
  if (r <= 0) {
    throw_error(ErrorCode::Internal, "blosc compression failed with code " + std::to_string(r));
  }
  return static_cast<std::size_t>(r);
}

std::vector<std::byte> blosc_encode(const std::byte* data, std::size_t n, std::size_t typesize,
                                    const std::string& cname, int clevel, int shuffle) {
  std::vector<std::byte> out;
  out.resize(blosc_encode_into(data, n, typesize, cname, clevel, shuffle, out));
  return out;
}

void blosc_decode(const std::byte* src, std::size_t n, std::byte* out, std::size_t out_n,
                  const std::string& what) {
  std::size_t nbytes = 0;
  // Checks the header's sizes against n, so blosc_decompress_ctx cannot be led outside src.
  if (blosc_cbuffer_validate(src, n, &nbytes) != 0) {
    corrupt(what, "invalid blosc data (" + bytes_text(n) +
                      " whose header does not describe a blosc buffer of that size)");
  }
  if (nbytes != out_n) {
    corrupt(what,
            "blosc data decodes to " + bytes_text(nbytes) + ", expected " + bytes_text(out_n));
  }
  if (out_n == 0) return;
  const int r = blosc_decompress_ctx(src, out, out_n, 1);
  if (r < 0 || static_cast<std::size_t>(r) != out_n) {
    corrupt(what, "invalid blosc data (decompression failed with code " + std::to_string(r) + ")");
  }
}

std::uint32_t crc32c(const std::byte* data, std::size_t n) {
  // crc32_iscsi counts in int: big buffers go through in pieces.
  constexpr std::size_t kPiece = std::size_t{1} << 30;
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t at = 0; at < n; at += kPiece) {
    const std::size_t len = std::min(kPiece, n - at);
    // ISA-L's prototype takes a non-const pointer; it only reads.
    crc = crc32_iscsi(const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(data + at)),
                      static_cast<int>(len), crc);
  }
  return crc ^ 0xFFFFFFFFu;
}

std::size_t zlib_encode_into(const std::byte* data, std::size_t n, int level, bool gzip,
                             std::vector<std::byte>& out) {
  if (level < -1 || level > 9) {
    throw_error(ErrorCode::InvalidArgument, std::string(gzip ? "gzip" : "zlib") + " level " +
                                                std::to_string(level) +
                                                " is out of range (use 0..9)");
  }
  if (const std::size_t size = deflate_whole(data, n, level, gzip, out); size > 0) return size;
  const std::vector<std::byte> slow = zlib_stream(data, n, level, gzip);
  if (out.size() < slow.size()) out.resize(slow.size());
  std::copy(slow.begin(), slow.end(), out.begin());
  return slow.size();
}

void byte_shuffle(const std::byte* in, std::byte* out, std::size_t n_elems, std::size_t itemsize) {
  for (std::size_t k = 0; k < itemsize; ++k) {
    std::byte* lane = out + k * n_elems;
    const std::byte* p = in + k;
    for (std::size_t i = 0; i < n_elems; ++i) lane[i] = p[i * itemsize];
  }
}

void byte_unshuffle(const std::byte* in, std::byte* out, std::size_t n_elems,
                    std::size_t itemsize) {
  for (std::size_t k = 0; k < itemsize; ++k) {
    const std::byte* lane = in + k * n_elems;
    std::byte* p = out + k;
    for (std::size_t i = 0; i < n_elems; ++i) p[i * itemsize] = lane[i];
  }
}

}  // namespace mmc::detail
