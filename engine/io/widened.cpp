// float16 sources read as float64 (see widened.hpp).
#include "io/widened.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "mmc/error.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace mmc::detail {
namespace {

// Every float16 value as a double, indexed by its bits.
const double* float16_table() {
  static const std::vector<double> table = [] {
    std::vector<double> t(std::size_t{1} << 16);
    for (std::size_t bits = 0; bits < t.size(); ++bits) {
      t[bits] = Float16{static_cast<std::uint16_t>(bits)}.value();
    }
    return t;
  }();
  return table.data();
}

#if defined(__x86_64__)
// F16C's conversion, 8 values at a time (exact, as the table's; NaN payloads kept).
__attribute__((target("avx,f16c"))) void widen_dense_f16c(const std::byte* src, double* out,
                                                          std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256 f = _mm256_cvtph_ps(h);
    _mm256_storeu_pd(out + i, _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
    _mm256_storeu_pd(out + i + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
  }
  const double* table = float16_table();
  for (; i < n; ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    out[i] = table[bits];
  }
}

// F16C and AVX, and an OS that saves the YMM registers (CPUID.1:ECX and XGETBV; clang 14's
// __builtin_cpu_supports knows no "f16c").
bool has_f16c() {
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
    constexpr unsigned kOsxsave = 1u << 27, kAvx = 1u << 28, kF16c = 1u << 29;
    if ((c & (kOsxsave | kAvx | kF16c)) != (kOsxsave | kAvx | kF16c)) return false;
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u;  // XMM and YMM state
  }();
  return yes;
}
#endif

// A dense source cut into chunks: whole axes, fastest first (the last in C order, the first in
// F order), while they fit in kTarget elements, then as many indices of the next as fit.
constexpr std::int64_t kTarget = std::int64_t{1} << 17;

Shape dense_chunks(const Shape& shape, Order order) {
  const std::size_t nd = shape.size();
  Shape chunks(nd, 1);
  std::int64_t inner = 1;
  for (std::size_t j = 0; j < nd; ++j) {
    const std::size_t k = order == Order::C ? nd - 1 - j : j;
    const std::int64_t extent = std::max<std::int64_t>(shape[k], 1);
    if (inner * extent <= kTarget) {
      chunks[k] = extent;
      inner *= extent;
      continue;
    }
    chunks[k] = std::max<std::int64_t>(kTarget / inner, 1);
    break;
  }
  return chunks;
}

// The order a dense source's elements lie in: F when its first axis is the faster.
Order dense_order(const ArrayMeta& meta) {
  const std::size_t nd = meta.shape.size();
  if (nd < 2) return Order::C;
  const auto size = [](std::int64_t s) { return s < 0 ? -s : s; };
  return size(meta.strides.front()) < size(meta.strides.back()) ? Order::F : Order::C;
}

ArrayMeta widened_meta(const ArrayMeta& meta, Order order) {
  return ArrayMeta::contiguous(DType(TypeId::F64), meta.shape, order);
}

std::vector<std::byte> widened_fill(const std::vector<std::byte>& fill, ByteOrder order) {
  double value = 0;
  widen_float16(fill.data(), 2, order, &value, 1);
  std::vector<std::byte> out(sizeof value);
  std::memcpy(out.data(), &value, sizeof value);
  return out;
}

class WidenedDense final : public ChunkedArray {
 public:
  explicit WidenedDense(const Source& source)
      : ChunkedArray(widened_meta(source.meta(), dense_order(source.meta())),
                     dense_chunks(source.meta().shape, dense_order(source.meta())), {}),
        source_(source) {}

  StorageInfo storage() const override {
    StorageInfo info;
    info.kind = source_.kind();
    info.layout = "contiguous";
    info.compressor = "none";
    return info;
  }
  std::string name() const override { return source_.path(); }
  const std::byte* chunk_in_place(const Shape&) const override { return nullptr; }

  void read_chunk(const Shape& coord, std::byte* out_bytes) const override {
    const ChunkRef ref = chunk(coord);
    const ArrayMeta& from = source_.meta();
    const std::size_t nd = from.shape.size();
    auto* out = reinterpret_cast<double*>(out_bytes);
    if (nd == 0) {
      widen_float16(source_.data(), 2, from.dtype.byte_order(), out, 1);
      return;
    }
    // Run by run along the fastest axis, into the chunk's layout (full chunk shape, the
    // array's order).
    const bool c_order = meta().order == Order::C;
    const std::size_t fast = c_order ? nd - 1 : 0;
    std::vector<std::int64_t> step(nd);  // elements between neighbours in the chunk buffer
    std::int64_t inner = 1;
    for (std::size_t j = 0; j < nd; ++j) {
      const std::size_t k = c_order ? nd - 1 - j : j;
      step[k] = inner;
      inner *= chunk_shape()[k];
    }
    const std::int64_t run = ref.box.count[fast];
    Shape at(nd, 0);
    for (;;) {
      std::int64_t src = 0, dst = 0;
      for (std::size_t k = 0; k < nd; ++k) {
        src += (ref.box.start[k] + at[k]) * from.strides[k];
        dst += at[k] * step[k];
      }
      widen_float16(source_.data() + src, from.strides[fast], from.dtype.byte_order(), out + dst,
                    run);
      // The next run: an odometer over the other axes.
      std::size_t j = 0;
      for (;; ++j) {
        if (j == nd) return;
        const std::size_t k = c_order ? nd - 1 - j : j;
        if (k == fast) continue;
        if (++at[k] < ref.box.count[k]) break;
        at[k] = 0;
      }
    }
  }

 private:
  const Source& source_;
};

class WidenedChunked final : public ChunkedArray {
 public:
  explicit WidenedChunked(const ChunkedArray& source)
      : ChunkedArray(widened_meta(source.meta(), source.meta().order), source.chunk_shape(),
                     widened_fill(source.fill_value(), source.meta().dtype.byte_order())),
        source_(source) {}

  StorageInfo storage() const override { return source_.storage(); }
  std::string name() const override { return source_.name(); }
  const std::byte* chunk_in_place(const Shape&) const override { return nullptr; }
  void reopen_after_fork() override { const_cast<ChunkedArray&>(source_).reopen_after_fork(); }

  void read_chunk(const Shape& coord, std::byte* out) const override {
    const auto n = static_cast<std::int64_t>(source_.chunk_nbytes() / 2);
    const std::byte* in = source_.chunk_in_place(coord);
    if (in == nullptr) {
      thread_local std::vector<std::byte> buffer;
      buffer.resize(source_.chunk_nbytes());
      source_.read_chunk(coord, buffer.data());
      in = buffer.data();
    }
    widen_float16(in, 2, source_.meta().dtype.byte_order(), reinterpret_cast<double*>(out), n);
  }

 private:
  const ChunkedArray& source_;
};

void require_float16(const ArrayMeta& meta, const std::string& name) {
  if (meta.dtype.id() != TypeId::F16) {
    throw Error(ErrorCode::Internal, name + " widened to float64 is not float16");
  }
}

}  // namespace

void widen_float16(const std::byte* src, std::int64_t stride, ByteOrder order, double* out,
                   std::int64_t n) {
  const bool swap = order != native_byte_order();
#if defined(__x86_64__)
  if (!swap && stride == 2 && has_f16c()) return widen_dense_f16c(src, out, n);
#endif
  const double* table = float16_table();
  for (std::int64_t i = 0; i < n; ++i, src += stride) {
    std::uint16_t bits;
    std::memcpy(&bits, src, 2);
    if (swap) bits = static_cast<std::uint16_t>(bits >> 8 | bits << 8);
    out[i] = table[bits];
  }
}

std::unique_ptr<ChunkedArray> widened_float16(const Source& source) {
  require_float16(source.meta(), source.path());
  return std::make_unique<WidenedDense>(source);
}

std::unique_ptr<ChunkedArray> widened_float16(const ChunkedArray& source) {
  require_float16(source.meta(), source.name());
  return std::make_unique<WidenedChunked>(source);
}

}  // namespace mmc::detail
