// Nodata and masks (ReduceOptions::nodata, ::mask), and byte-swapped data: a native family
// wrapped so that it folds only the elements kept, in native order. Strategy A runs are compacted,
// a block of kept elements at a time, into a native-order buffer that the family folds as one dense
// run (so its vector kernels serve it); strategy B lines, whose elements each go to their own
// output, fold element by element. The grouping into blocks depends on the run and the data only,
// so results stay bitwise independent of workers, backends and chunking. Byte-swapped data is
// swapped while compacting, with or without a filter: the executor has no byte-swapped families.
// With nothing to leave out or swap, every call passes to the family whole (passthrough()): the
// executor runs only wrapped families, one set per type.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "kernels/load.hpp"
#include "mmc/error.hpp"
#include "mmc/reduce.hpp"

namespace mmc::detail {

// What a filtered family leaves out: elements where mask[offset] is not 0 (no mask when null),
// and elements equal to nodata.
template <class T>
struct FilterSpec {
  const std::uint8_t* mask = nullptr;
  bool swap = false;  // the data is in the other byte order
  bool has_nodata = false;
  T nodata{};
};

// The nodata value as a T (numpy's ==: the value cast to the array's dtype), or nothing. Throws
// Error(InvalidArgument) when an integer dtype cannot hold it (numpy would compare in a wider
// type and never find it: surely not what was meant) and for NaN.
template <class T>
std::optional<T> nodata_as(const NoData& nodata, const std::string& dtype_name) {
  if (std::holds_alternative<std::monostate>(nodata)) return std::nullopt;
  const auto refuse = [&](const std::string& why) -> std::optional<T> {
    throw Error(ErrorCode::InvalidArgument,
                "nodata " + format_nodata(nodata) + " " + why + " " + dtype_name);
  };
  if (const double* f = std::get_if<double>(&nodata); f != nullptr && std::isnan(*f)) {
    return refuse("equals nothing (NaN never equals NaN: leave NaN out with the nan ops) in");
  }
  if constexpr (std::is_same_v<T, bool>) {
    if (const auto* i = std::get_if<std::int64_t>(&nodata); i != nullptr && (*i == 0 || *i == 1)) {
      return *i == 1;
    }
    if (const auto* u = std::get_if<std::uint64_t>(&nodata); u != nullptr && *u <= 1) {
      return *u == 1;
    }
    if (const auto* f = std::get_if<double>(&nodata); f != nullptr && (*f == 0 || *f == 1)) {
      return *f == 1;
    }
    return refuse("is not a value of");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (const auto* i = std::get_if<std::int64_t>(&nodata)) return static_cast<T>(*i);
    if (const auto* u = std::get_if<std::uint64_t>(&nodata)) return static_cast<T>(*u);
    const double f = std::get<double>(nodata);
    if constexpr (std::is_same_v<T, float>) {
      // numpy's cast, rounding to nearest: past float32's largest value by less than half its
      // spacing (2^103) is that value (GDAL's -3.4028235e+38), farther is infinite.
      const double top = static_cast<double>(std::numeric_limits<float>::max());
      if (std::isfinite(f) && std::fabs(f) > top) {
        const bool rounds_down = std::fabs(f) < std::ldexp(1.0, 128) - std::ldexp(1.0, 103);
        return std::copysign(rounds_down ? std::numeric_limits<float>::max()
                                         : std::numeric_limits<float>::infinity(),
                             static_cast<float>(f > 0 ? 1 : -1));
      }
    }
    return static_cast<T>(f);
  } else {
    using L = std::numeric_limits<T>;
    if (const auto* i = std::get_if<std::int64_t>(&nodata)) {
      if constexpr (std::is_signed_v<T>) {
        if (*i >= L::min() && *i <= L::max()) return static_cast<T>(*i);
      } else {
        if (*i >= 0 && static_cast<std::uint64_t>(*i) <= L::max()) return static_cast<T>(*i);
      }
      return refuse("is out of the range of");
    }
    if (const auto* u = std::get_if<std::uint64_t>(&nodata)) {
      if (*u <= static_cast<std::uint64_t>(L::max())) return static_cast<T>(*u);
      return refuse("is out of the range of");
    }
    const double f = std::get<double>(nodata);
    if (!std::isfinite(f)) return refuse("is out of the range of");
    if (f != std::trunc(f)) return refuse("is not a value of");
    // Integers in double: exact up to 2^53, and every bound below is a power of two or zero.
    if (f < static_cast<double>(L::min()) || f >= 2.0 * (static_cast<double>(L::max() / 2) + 1)) {
      return refuse("is out of the range of");
    }
    return static_cast<T>(f);
  }
}

// Elements compacted per call of the wrapped family: a multiple of the float sums' leaf (and of
// the variance's block), so that a block is whole leaves. Each block is its own pairwise sum,
// added to the partial compensated: a run of more than one block sums differently from one
// dense run of the same elements (last bits; as accurate).
inline constexpr std::int64_t kFilterBlock = 4096;

// F (a native-order family of element type T) over the elements FilterSpec keeps. The task
// runner hands it, beside each run or line, the mask offset of its first element and the mask's
// stride along it.
template <class F, class T>
struct Filtered : F {
  static constexpr bool kFiltered = true;
  using Partial = typename F::Partial;
  using Elem = kernels::Stored<T>;
  static constexpr std::int64_t kElem = sizeof(Elem);

  Filtered(const F& family, const FilterSpec<T>& spec) : F(family), spec_(spec) {}

  // Nothing to leave out and nothing to swap: every call goes to F whole, as F alone would be
  // called (the same bits). The executor runs every pass Filtered (execute_for_type), so each
  // type compiles one set of task runners and slots instead of two: by_type in ~60 % of the CPU
  // time (docs/ARCHITECTURE.md, "Build and test time").
  bool passthrough() const noexcept {
    return !spec_.has_nodata && spec_.mask == nullptr && !spec_.swap;
  }

  // Strategy A: a run into one partial. The run goes a chunk of kFilterBlock elements at a
  // time: their keep flags first (vector code), then the kept ones are compacted into a block
  // that F folds as a dense native run. A chunk all kept while the block is empty folds in
  // place (or swapped into the block) instead: the very call the block would make.
  void run(Partial& p, const std::byte* ptr, std::int64_t n, std::int64_t stride, std::int64_t moff,
           std::int64_t mstride) const {
    static_assert(!F::kNeedsIndex);
    if (passthrough()) return fold_run(p, ptr, n, stride);
    Elem buf[kFilterBlock];
    std::uint8_t keep[kFilterBlock];
    std::int64_t k = 0;
    for (std::int64_t i0 = 0; i0 < n; i0 += kFilterBlock) {
      const std::int64_t len = std::min(kFilterBlock, n - i0);
      const std::byte* src = ptr + i0 * stride;
      const std::int64_t kept = flags(src, len, stride, moff + i0 * mstride, mstride, keep);
      if (kept == 0) continue;
      if (k == 0 && kept == len) {
        const std::byte* native = native_chunk(src, len, stride, buf);
        fold_run(p, native, len, native == src ? stride : kElem);
        continue;
      }
      for (std::int64_t i = 0; i < len; ++i) {
        buf[k] = take(src + i * stride);
        k += keep[i];
        if (k == kFilterBlock) {
          fold_run(p, reinterpret_cast<const std::byte*>(buf), k, kElem);
          k = 0;
        }
      }
    }
    if (k > 0) fold_run(p, reinterpret_cast<const std::byte*>(buf), k, kElem);
  }
  // Strategy A for families that need each element's index (argmin/argmax): chunks all kept in
  // one call, other kept elements one by one with their indices.
  void run(Partial& p, const std::byte* ptr, std::int64_t n, std::int64_t stride,
           std::int64_t first, std::int64_t index_stride, std::int64_t moff,
           std::int64_t mstride) const {
    if (passthrough()) return fold_run(p, ptr, n, stride, first, index_stride);
    Elem buf[kFilterBlock];
    std::uint8_t keep[kFilterBlock];
    for (std::int64_t i0 = 0; i0 < n; i0 += kFilterBlock) {
      const std::int64_t len = std::min(kFilterBlock, n - i0);
      const std::byte* src = ptr + i0 * stride;
      const std::int64_t kept = flags(src, len, stride, moff + i0 * mstride, mstride, keep);
      if (kept == len) {
        const std::byte* native = native_chunk(src, len, stride, buf);
        fold_run(p, native, len, native == src ? stride : kElem, first + i0 * index_stride,
                 index_stride);
        continue;
      }
      for (std::int64_t i = 0; kept > 0 && i < len; ++i) {
        if (keep[i] == 0) continue;
        const Elem v = take(src + i * stride);
        fold_run(p, reinterpret_cast<const std::byte*>(&v), 1, kElem,
                 first + (i0 + i) * index_stride, index_stride);
      }
    }
  }
  // Strategy B: element j of the line into partial j (a chunk all kept in one call).
  void line(Partial* parts, const std::byte* ptr, std::int64_t n, std::int64_t stride,
            std::int64_t moff, std::int64_t mstride) const {
    if (passthrough()) return fold_line(parts, ptr, n, stride);
    lines_kept(parts, ptr, n, stride, moff, mstride,
               [this](Partial* at, const std::byte* q, std::int64_t m, std::int64_t s) {
                 fold_line(at, q, m, s);
               });
  }
  void line(Partial* parts, const std::byte* ptr, std::int64_t n, std::int64_t stride,
            std::int64_t index, std::int64_t moff, std::int64_t mstride) const {
    if (passthrough()) return fold_line(parts, ptr, n, stride, index);
    lines_kept(parts, ptr, n, stride, moff, mstride,
               [this, index](Partial* at, const std::byte* q, std::int64_t m, std::int64_t s) {
                 fold_line(at, q, m, s, index);
               });
  }

  // Strategy B over m lines (line k at ptr + k * line_stride), mask offsets as line()'s plus
  // k * mline per line. Byte-swapped data with nothing left out goes in tiles of up to 512
  // outputs by 128 lines, swapped into this thread's buffer and handed to F::lines (its blocked
  // vector code, which keeps a block's state in registers across the tile's lines; lines() is
  // line() line after line by contract, so tiles give the same partials); otherwise line() per
  // line.
  void lines(Partial* parts, const std::byte* ptr, std::int64_t n, std::int64_t stride,
             std::int64_t m, std::int64_t line_stride, std::int64_t moff, std::int64_t mstride,
             std::int64_t mline) const {
    if constexpr (requires(const F& f) { f.lines(parts, ptr, n, n, n, n); }) {
      if (passthrough()) return fold_lines(parts, ptr, n, stride, m, line_stride);
      if (!spec_.has_nodata && spec_.mask == nullptr) {
        constexpr std::int64_t kTileOutputs = 512, kTileLines = 128;
        const std::int64_t w = width();
        const std::int64_t cols = std::min(n, kTileOutputs);
        const std::int64_t rows = std::min(m, kTileLines);
        thread_local std::vector<Elem> tile;
        tile.resize(static_cast<std::size_t>(kTileOutputs * kTileLines));
        Elem* buf = tile.data();
        for (std::int64_t c0 = 0; c0 < n; c0 += cols) {
          const std::int64_t nc = std::min(cols, n - c0);
          for (std::int64_t r0 = 0; r0 < m; r0 += rows) {
            const std::int64_t nr = std::min(rows, m - r0);
            for (std::int64_t r = 0; r < nr; ++r) {
              const std::byte* row = ptr + (r0 + r) * line_stride + c0 * stride;
              for (std::int64_t c = 0; c < nc; ++c) buf[r * nc + c] = take(row + c * stride);
            }
            fold_lines(parts + c0 * w, reinterpret_cast<const std::byte*>(buf), nc, kElem, nr,
                       nc * kElem);
          }
        }
        return;
      }
    }
    for (std::int64_t k = 0; k < m; ++k) {
      line(parts, ptr + k * line_stride, n, stride, moff + k * mline, mstride);
    }
  }

  std::int64_t width() const noexcept {
    if constexpr (requires(const F& f) { f.width(); }) {
      return F::width();
    } else {
      return 1;
    }
  }
  const FilterSpec<T>& spec() const noexcept { return spec_; }

 private:
  Elem take(const std::byte* p) const noexcept {
    Elem v;
    std::memcpy(&v, p, sizeof v);
    if constexpr (sizeof(Elem) > 1) {
      if (spec_.swap) v = kernels::byteswap(v);
    }
    return v;
  }
  // F::run, out of line: one copy of the family's kernels per wrapper rather than one per call
  // (the by_type files compile in about half the time).
  [[gnu::noinline]] void fold_run(Partial& p, const std::byte* q, std::int64_t n,
                                  std::int64_t stride) const {
    F::run(p, q, n, stride);
  }

  [[gnu::noinline]] void fold_line(Partial* at, const std::byte* q, std::int64_t n,
                                   std::int64_t stride) const {
    F::line(at, q, n, stride);
  }

  // The same for the families that take each element's index, and for F::lines.
  [[gnu::noinline]] void fold_run(Partial& p, const std::byte* q, std::int64_t n,
                                  std::int64_t stride, std::int64_t first,
                                  std::int64_t index_stride) const {
    F::run(p, q, n, stride, first, index_stride);
  }
  [[gnu::noinline]] void fold_line(Partial* at, const std::byte* q, std::int64_t n,
                                   std::int64_t stride, std::int64_t index) const {
    F::line(at, q, n, stride, index);
  }
  [[gnu::noinline]] void fold_lines(Partial* parts, const std::byte* q, std::int64_t n,
                                    std::int64_t stride, std::int64_t m,
                                    std::int64_t line_stride) const {
    F::lines(parts, q, n, stride, m, line_stride);
  }

  // The n elements at ptr in native order: ptr itself, or their swapped copy in buf.
  const std::byte* native_chunk(const std::byte* ptr, std::int64_t n, std::int64_t stride,
                                Elem* buf) const noexcept {
    if constexpr (sizeof(Elem) > 1) {
      if (spec_.swap) {
        for (std::int64_t i = 0; i < n; ++i) buf[i] = take(ptr + i * stride);
        return reinterpret_cast<const std::byte*>(buf);
      }
    }
    return ptr;
  }

  // Whether v differs from the nodata value (numpy's ==: -0.0 equals 0.0, NaN equals nothing).
  bool differs(Elem v) const noexcept {
    if constexpr (std::is_same_v<T, bool>) {
      return (v != 0) != spec_.nodata;
    } else {
      return v != spec_.nodata;
    }
  }

  // keep[i] = 1 when element i of the n at ptr is kept, else 0; returns how many are kept.
  // The common layouts (dense native data; a mask walked densely or not at all) are loops the
  // compiler vectorizes.
  std::int64_t flags(const std::byte* ptr, std::int64_t n, std::int64_t stride, std::int64_t moff,
                     std::int64_t mstride, std::uint8_t* keep) const noexcept {
    if (!spec_.has_nodata && spec_.mask == nullptr) return n;  // byte-swapped data alone
    if (!spec_.has_nodata) {
      std::memset(keep, 1, static_cast<std::size_t>(n));
    } else if (stride == static_cast<std::int64_t>(sizeof(Elem)) && !spec_.swap) {
      const T nodata = spec_.nodata;
      for (std::int64_t i = 0; i < n; ++i) {
        Elem v;
        std::memcpy(&v, ptr + i * static_cast<std::int64_t>(sizeof(Elem)), sizeof v);
        if constexpr (std::is_same_v<T, bool>) {
          keep[i] = static_cast<std::uint8_t>((v != 0) != nodata);
        } else {
          keep[i] = static_cast<std::uint8_t>(v != nodata);
        }
      }
    } else {
      for (std::int64_t i = 0; i < n; ++i) keep[i] = differs(take(ptr + i * stride)) ? 1 : 0;
    }
    if (spec_.mask != nullptr) {
      const std::uint8_t* m = spec_.mask + moff;
      if (mstride == 1) {
        for (std::int64_t i = 0; i < n; ++i) keep[i] &= static_cast<std::uint8_t>(m[i] == 0);
      } else if (mstride == 0) {
        if (m[0] != 0) std::memset(keep, 0, static_cast<std::size_t>(n));
      } else {
        for (std::int64_t i = 0; i < n; ++i) {
          keep[i] &= static_cast<std::uint8_t>(m[i * mstride] == 0);
        }
      }
    }
    std::int64_t kept = 0;
    for (std::int64_t i = 0; i < n; ++i) kept += keep[i];
    return kept;
  }

  // fold(partials, elements, count, stride) over the kept elements of a line, a chunk at a
  // time: in place when the whole chunk is kept (and native), else element by element.
  template <class Fold>
  void lines_kept(Partial* parts, const std::byte* ptr, std::int64_t n, std::int64_t stride,
                  std::int64_t moff, std::int64_t mstride, const Fold& fold) const {
    const std::int64_t w = width();
    Elem buf[kFilterBlock];
    std::uint8_t keep[kFilterBlock];
    for (std::int64_t j0 = 0; j0 < n; j0 += kFilterBlock) {
      const std::int64_t len = std::min(kFilterBlock, n - j0);
      const std::byte* src = ptr + j0 * stride;
      const std::int64_t kept = flags(src, len, stride, moff + j0 * mstride, mstride, keep);
      if (kept == len) {
        const std::byte* native = native_chunk(src, len, stride, buf);
        fold(parts + j0 * w, native, len, native == src ? stride : kElem);
        continue;
      }
      for (std::int64_t j = 0; kept > 0 && j < len; ++j) {
        if (keep[j] == 0) continue;
        const Elem v = take(src + j * stride);
        fold(parts + (j0 + j) * w, reinterpret_cast<const std::byte*>(&v), 1, kElem);
      }
    }
  }

  FilterSpec<T> spec_;
};

}  // namespace mmc::detail
