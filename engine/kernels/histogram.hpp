// The histogram family: counts per equal-width bin, with numpy's bin assignment. Integers of one
// or two bytes look their bin up in a table made once per call; wider types compute it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/families.hpp"
#include "mmc/dtype.hpp"

namespace mmc::kernels {

// numpy 1.24's float types beside a float16 array (value-based casting): a float scalar is
// float16 there when -65000 < v < 65000 (or infinite, or NaN), float32 up to float32's largest,
// float64 past it; an operation between them runs in the wider.
enum class HalfBinType : std::uint8_t { F16, F32, F64 };

inline HalfBinType scalar_type_beside_float16(double v) noexcept {
  if (!std::isfinite(v) || (v > -65000.0 && v < 65000.0)) return HalfBinType::F16;
  return std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max()) ? HalfBinType::F32
                                                                                : HalfBinType::F64;
}

// A float rounded to the nearest float16 (ties to even), as numpy's float-to-half: the 13 low
// fraction bits rounded off where float16 is normal, steps of 2^-24 below, infinity from
// 65520 on. NaN stays NaN.
inline float round_float_to_half(float f) noexcept {
  const float a = std::fabs(f);
  if (!(a < 65520.0f)) return a >= 65520.0f ? std::copysign(HUGE_VALF, f) : f;
  if (a < 0x1p-14f) return std::nearbyint(f * 0x1p24f) * 0x1p-24f;
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x0fffu + ((u >> 13) & 1u);
  u &= ~0x1fffu;
  float out;
  std::memcpy(&out, &u, sizeof out);
  return out;
}

// v as a value of type t (numpy's cast from float64: nearest, ties to even).
inline double cast_to(HalfBinType t, double v) noexcept {
  switch (t) {
    case HalfBinType::F16:
      return Float16::from(v).value();
    case HalfBinType::F32:
      return static_cast<double>(static_cast<float>(v));
    case HalfBinType::F64:
      break;
  }
  return v;
}

// a - b and a * b of two values of type t, as numpy's loops give them: float16 computes in
// float32 and rounds the result to float16.
inline double subtract_in(HalfBinType t, double a, double b) noexcept {
  if (t == HalfBinType::F64) return a - b;
  const float r = static_cast<float>(a) - static_cast<float>(b);
  return t == HalfBinType::F16 ? round_float_to_half(r) : r;
}
inline double multiply_in(HalfBinType t, double a, double b) noexcept {
  if (t == HalfBinType::F64) return a * b;
  const float r = static_cast<float>(a) * static_cast<float>(b);
  return t == HalfBinType::F16 ? round_float_to_half(r) : r;
}

// np.histogram's bin of x from its estimate f = (x - first) * norm: f truncated (bins - 1 for
// f >= bins, or NaN; the guards only matter for absurd ranges, where numpy itself fails with an
// IndexError), then numpy's two corrections against the edges, from one pair of loads: one
// step down when x < edges[i], one step up when x >= edges[i + 1] (after a step down the edge
// above is edges[i] itself, which x is below), never up from the last bin (closed on the right).
template <class E>
std::int64_t numpy_bin(E f, E x, E top, std::int64_t last, const E* edges) noexcept {
  std::int64_t i = f < top ? static_cast<std::int64_t>(f) : last;
  if (i > last) i = last;
  if (i < 0) i = 0;
  const E below = edges[i], above = edges[i + 1];
  const bool down = (x < below) & (i > 0);
  const bool up = !down & (x >= above) & (i != last);
  return i + static_cast<std::int64_t>(up) - static_cast<std::int64_t>(down);
}

// np.linspace(first, last, bins + 1) as numpy computes it in float64 (i * step + first, or
// i / bins * delta + first for a subnormal step; the last edge exactly `last`), each edge then
// cast to the edges' type by `cast`.
template <class E, class Cast>
std::vector<E> linspace_edges(std::int64_t bins, double first, double last, Cast cast) {
  const double delta = last - first;
  const double div = static_cast<double>(bins);
  const double step = delta / div;
  std::vector<E> edges(static_cast<std::size_t>(bins) + 1);
  for (std::int64_t i = 0; i < bins; ++i) {
    const double at = step == 0 ? static_cast<double>(i) / div * delta + first
                                : static_cast<double>(i) * step + first;
    edges[static_cast<std::size_t>(i)] = cast(at);
  }
  edges.back() = cast(last);
  return edges;
}

// The bins of float16 data (widened to float64 to compute) as np.histogram's fast path puts its
// elements, in numpy's types: each bound compared in its own scalar type (float16 when it is
// one of the data's, or small), x - first in the edges' type (float16 when both bounds are),
// times the norm in the wider of that and the norm's own type, truncated; then numpy's one step
// down or up against the edges (in the edges' type). See Float16BinEdges.
struct Float16Binner {
  double keep_lo, keep_hi;
  HalfBinType edge_type, multiply_type;
  double first, norm;
  double top;         // bins
  std::int64_t last;  // bins - 1
  const double* edges;

  std::int64_t bin(double x) const noexcept {
    if (!(x >= keep_lo && x <= keep_hi)) return -1;
    const double f = multiply_in(multiply_type, subtract_in(edge_type, x, first), norm);
    return numpy_bin(f, x, top, last, edges);
  }
};

class Float16BinEdges {
 public:
  using Value = double;
  using BinnerType = Float16Binner;

  // first, last: the range; data_scalars: they are the float16 data's min and max (numpy
  // scalars of float16), else Python floats (a given range, or the data's widened by 0.5);
  // span: last - first as numpy subtracts them (in float16 for the data's scalars).
  // REQUIRES: bins >= 1, first < last, both finite.
  Float16BinEdges(std::int64_t bins, double first, double last, double span, bool data_scalars)
      : bins_(bins) {
    const HalfBinType lo_type = data_scalars ? HalfBinType::F16 : scalar_type_beside_float16(first);
    const HalfBinType hi_type = data_scalars ? HalfBinType::F16 : scalar_type_beside_float16(last);
    type_ = std::max(lo_type, hi_type);
    const double norm = static_cast<double>(bins) / span;  // a float64 scalar
    multiply_type_ = std::max(type_, scalar_type_beside_float16(norm));
    keep_lo_ = cast_to(lo_type, first);
    keep_hi_ = cast_to(hi_type, last);
    first_ = cast_to(type_, first);
    norm_ = cast_to(multiply_type_, norm);
    edges_ = linspace_edges<double>(bins, first, last,
                                    [t = type_](double at) { return cast_to(t, at); });
  }

  Float16BinEdges(const Float16BinEdges&) = delete;  // binner() points into edges_
  Float16BinEdges& operator=(const Float16BinEdges&) = delete;

  // True when numpy's arithmetic overflows at the top of the range: its index for an element
  // there is NaN or infinite, and np.histogram fails. Asked when the range is the data's (the
  // top is an element). (With a given range numpy fails only if such an element exists; here
  // it lands in the last bin.)
  bool overflows() const noexcept {
    const double top =
        multiply_in(multiply_type_, subtract_in(type_, cast_to(type_, keep_hi_), first_), norm_);
    return !std::isfinite(top);
  }

  std::int64_t bins() const noexcept { return bins_; }
  // The edges' values, and numpy's dtype for them.
  const std::vector<double>& edges() const noexcept { return edges_; }
  HalfBinType edge_type() const noexcept { return type_; }
  Float16Binner binner() const noexcept {
    return Float16Binner{
        keep_lo_,  keep_hi_,     type_, multiply_type_, first_, norm_, static_cast<double>(bins_),
        bins_ - 1, edges_.data()};
  }
  std::int64_t bin(double x) const noexcept { return binner().bin(x); }

 private:
  std::int64_t bins_;
  HalfBinType type_, multiply_type_;
  double keep_lo_, keep_hi_, first_, norm_;
  std::vector<double> edges_;
};

// The type numpy computes bin indices in: float32 data stays float32, everything else float64
// (float16 data: Float16BinEdges).
template <class T>
using BinType = std::conditional_t<std::is_same_v<T, float>, float, double>;

// Equal-width bins over [first, last], exactly as np.histogram's fast path (numpy 1.24) does it
// in the bin type E:
//   edges  np.linspace(first, last, bins + 1): i * step + first in double, step = (last -
//          first) / bins (for a subnormal step, i / bins * (last - first) + first), the last
//          edge exactly `last`; then rounded to E;
//   index  i = int((x - first) * norm) in E, with norm = bins / span rounded to E; i == bins
//          becomes bins - 1; then one step down when x < edges[i], and one step up when
//          x >= edges[i + 1], except from the last bin (which is closed on the right).
// x is counted when first <= x <= last, compared in E; NaN never is.
template <class E>
struct Binner {
  E lo, hi, norm;
  E top;              // bins, as E
  std::int64_t last;  // bins - 1
  const E* edges;     // bins + 1

  // The bin of x, or -1 when x is not counted.
  std::int64_t bin(E x) const noexcept {
    if (!(x >= lo && x <= hi)) return -1;
    return numpy_bin<E>((x - lo) * norm, x, top, last, edges);
  }
};

// The edges of equal-width bins, and the Binner over them.
template <class E>
class BinEdges {
 public:
  using Value = E;
  using BinnerType = Binner<E>;

  // span: last - first as numpy computes it for the edges' types (np.histogram's
  // _unsigned_subtract), which is not always the double difference. REQUIRES: bins >= 1,
  // first < last, both finite.
  BinEdges(std::int64_t bins, double first, double last, double span)
      : bins_(bins),
        lo_(static_cast<E>(first)),
        hi_(static_cast<E>(last)),
        norm_(static_cast<E>(static_cast<double>(bins) / span)),
        edges_(linspace_edges<E>(bins, first, last, [](double at) { return static_cast<E>(at); })) {
  }

  BinEdges(const BinEdges&) = delete;  // binner() points into edges_
  BinEdges& operator=(const BinEdges&) = delete;

  std::int64_t bins() const noexcept { return bins_; }
  const std::vector<E>& edges() const noexcept { return edges_; }
  Binner<E> binner() const noexcept {
    return Binner<E>{lo_, hi_, norm_, static_cast<E>(bins_), bins_ - 1, edges_.data()};
  }
  // The bin of x, or -1 when x is not counted.
  std::int64_t bin(E x) const noexcept { return binner().bin(x); }

 private:
  std::int64_t bins_;
  E lo_, hi_, norm_;
  std::vector<E> edges_;
};

// Integers of one or two bytes (and bool): their bins come from a table over every value.
template <class T>
inline constexpr bool kBinTable = std::is_integral_v<T> && sizeof(T) <= 2;

// The counts of bins() bins per output. Partial is one count; an output's partial is bins()
// consecutive counts, and init/run/merge take the first of them.
// Edges: BinEdges of the bin type, or Float16BinEdges for float16 data widened to float64.
template <class T, bool Swap, class Edges = BinEdges<BinType<T>>>
class HistogramFamily {
 public:
  using E = typename Edges::Value;
  using Partial = std::int64_t;
  static constexpr FamilyKind kKind = FamilyKind::Histogram;
  static constexpr bool kNeedsIndex = false;

  // `edges` must outlive the family. `elements`: how many will be counted, to decide whether a
  // table of bins over all 2^8 or 2^16 values pays for itself.
  HistogramFamily(const Edges& edges, std::int64_t elements) : edges_(edges) {
    if constexpr (kBinTable<T>) {
      if (elements < 2 * (std::int64_t{1} << (8 * sizeof(Stored<T>)))) return;
      using U = std::make_unsigned_t<Stored<T>>;
      constexpr std::size_t kValues = std::size_t{1} << (8 * sizeof(U));
      table_.resize(kValues);
      for (std::size_t u = 0; u < kValues; ++u) {
        U bits = static_cast<U>(u);
        Stored<T> v;
        std::memcpy(&v, &bits, sizeof v);
        table_[u] = static_cast<std::int32_t>(slot_of_value(load_value(v)));
      }
    }
  }

  std::int64_t width() const noexcept { return edges_.bins(); }

  void init(Partial& first) const noexcept {
    std::int64_t* counts = &first;
    for (std::int64_t b = 0; b < width(); ++b) counts[b] = 0;
  }

  void run(Partial& first, const std::byte* p, std::int64_t n, std::int64_t stride) const {
    with_density<T>(stride, [&](auto dense) {
      constexpr bool kDense = decltype(dense)::value;
      const std::int64_t s = kDense ? static_cast<std::int64_t>(sizeof(Stored<T>)) : stride;
      count<kDense>(&first, p, n, s);
    });
  }

  void line(Partial* counts, const std::byte* p, std::int64_t n, std::int64_t stride) const {
    const std::int64_t bins = width();
    const Slots slots = this->slots();
    for (std::int64_t j = 0; j < n; ++j, p += stride) {
      const std::int64_t b = slots(load<T, Swap>(p));
      if (b < bins) ++counts[j * bins + b];
    }
  }

  void merge(Partial& a, const Partial& b) const noexcept {
    std::int64_t* into = &a;
    const std::int64_t* from = &b;
    for (std::int64_t k = 0; k < width(); ++k) into[k] += from[k];
  }

 private:
  // Runs at least this long count into sub-histograms (see count()).
  static constexpr std::int64_t kSplitMin = 1024;

  static T load_value(Stored<T> v) noexcept {
    if constexpr (std::is_same_v<T, bool>) {
      return v != 0;
    } else {
      return v;
    }
  }

  // The bin of x, or bins() (a slot past the bins) when x is not counted.
  std::int64_t slot_of_value(T x) const noexcept {
    const std::int64_t b = edges_.bin(static_cast<E>(x));
    return b < 0 ? edges_.bins() : b;
  }

  // slot_of_value in a loop: a copy of what it needs, which the compiler keeps in registers
  // (stores to the int64 counters could otherwise alias the family's own fields).
  struct Slots {
    typename Edges::BinnerType binner;
    const std::int32_t* table;  // kBinTable and many elements, else null

    std::int64_t operator()(T x) const noexcept {
      if constexpr (kBinTable<T>) {
        if (table != nullptr) {
          using U = std::make_unsigned_t<Stored<T>>;
          const auto v = static_cast<Stored<T>>(x);
          U bits;
          std::memcpy(&bits, &v, sizeof bits);
          return table[bits];
        }
      }
      const std::int64_t b = binner.bin(static_cast<E>(x));
      return b < 0 ? binner.last + 1 : b;
    }
  };

  Slots slots() const noexcept {
    return Slots{edges_.binner(), table_.empty() ? nullptr : table_.data()};
  }

  template <bool Contig>
  void count(std::int64_t* counts, const std::byte* p, std::int64_t n,
             std::int64_t runtime_stride) const {
    const std::int64_t stride =
        Contig ? static_cast<std::int64_t>(sizeof(Stored<T>)) : runtime_stride;
    const std::int64_t bins = width();
    if constexpr (sizeof(Stored<T>) == 1) {
      if (n >= kSplitMin) return count_bytes(counts, p, n, stride);
    }
    const Slots slot = slots();
    if (n < kSplitMin || n < 8 * (bins + 1)) {
      for (std::int64_t i = 0; i < n; ++i, p += stride) {
        const std::int64_t b = slot(load<T, Swap>(p));
        if (b < bins) ++counts[b];
      }
      return;
    }
    // Neighbouring elements often fall in the same bin; four interleaved sub-histograms keep
    // each increment from waiting for the store of the previous one to the same counter. The
    // extra slot per sub-histogram takes the elements that are not counted, without a branch.
    const std::size_t w = static_cast<std::size_t>(bins) + 1;
    std::vector<std::int64_t> sub(4 * w, 0);
    std::int64_t* h0 = sub.data();
    std::int64_t* h1 = h0 + w;
    std::int64_t* h2 = h1 + w;
    std::int64_t* h3 = h2 + w;
    std::int64_t i = 0;
    for (; i + 4 <= n; i += 4, p += 4 * stride) {
      ++h0[slot(load<T, Swap>(p))];
      ++h1[slot(load<T, Swap>(p + stride))];
      ++h2[slot(load<T, Swap>(p + 2 * stride))];
      ++h3[slot(load<T, Swap>(p + 3 * stride))];
    }
    for (; i < n; ++i, p += stride) ++h0[slot(load<T, Swap>(p))];
    for (std::int64_t b = 0; b < bins; ++b) counts[b] += h0[b] + h1[b] + h2[b] + h3[b];
  }

  // One-byte values: how often each of the 256 occurs (four interleaved tables, for the same
  // reason as count()'s sub-histograms), then each value's count goes to its bin.
  void count_bytes(std::int64_t* counts, const std::byte* p, std::int64_t n,
                   std::int64_t stride) const {
    constexpr std::int64_t kChunk = std::int64_t{1} << 32;  // 32-bit counters cannot overflow
    for (std::int64_t start = 0; start < n; start += kChunk) {
      const std::int64_t m = n - start < kChunk ? n - start : kChunk;
      std::uint32_t seen[4][256] = {};
      const auto* q = reinterpret_cast<const std::uint8_t*>(p + start * stride);
      std::int64_t i = 0;
      for (; i + 4 <= m; i += 4, q += 4 * stride) {
        ++seen[0][q[0]];
        ++seen[1][q[stride]];
        ++seen[2][q[2 * stride]];
        ++seen[3][q[3 * stride]];
      }
      for (; i < m; ++i, q += stride) ++seen[0][*q];
      for (int v = 0; v < 256; ++v) {
        const std::int64_t c = std::int64_t{seen[0][v]} + seen[1][v] + seen[2][v] + seen[3][v];
        if (c == 0) continue;
        const auto bits = static_cast<std::uint8_t>(v);
        Stored<T> value;
        std::memcpy(&value, &bits, 1);
        const std::int64_t b = slot_of_value(load_value(value));
        if (b < width()) counts[b] += c;
      }
    }
  }

  const Edges& edges_;
  std::vector<std::int32_t> table_;  // kBinTable, many elements: the slot of every value
};

}  // namespace mmc::kernels
