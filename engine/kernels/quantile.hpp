// Exact order statistics by counting: each element becomes an unsigned key whose order is the
// value's (numpy's sort order, NaN last), and a pass counts, per output, the keys under one
// digit of those bits. A 1- or 2-byte type has a single 8- or 16-bit digit: one pass gives
// every order statistic. Wider types are refined from the top digit down (16 bits per pass),
// each pass counting only the elements whose higher digits equal a prefix found by the pass
// before (reduce/quantile.hpp keeps those prefixes per output and rank).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/families.hpp"
#include "kernels/load.hpp"

namespace mmc::kernels {

// The key type of T: unsigned, as wide as T's storage.
template <class T>
using KeyOf = std::conditional_t<
    sizeof(Stored<T>) == 1, std::uint8_t,
    std::conditional_t<sizeof(Stored<T>) == 2, std::uint16_t,
                       std::conditional_t<sizeof(Stored<T>) == 4, std::uint32_t, std::uint64_t>>>;

// x's key: integers with the sign bit flipped, floats as their bits with negatives reversed (so
// -inf < ... < -0.0 < 0.0 < ... < inf), every NaN the largest key (numpy sorts NaN last).
template <class T>
inline KeyOf<T> order_key(T x) noexcept {
  using K = KeyOf<T>;
  constexpr K kSign = K{1} << (8 * sizeof(K) - 1);
  if constexpr (std::is_same_v<T, bool>) {
    return x ? 1 : 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    // On the bits alone, without branches, so that loops over keys vectorize: a NaN's magnitude
    // is above infinity's; a negative's bits are flipped (x ^ all ones), a positive's sign set.
    K bits;
    std::memcpy(&bits, &x, sizeof bits);
    constexpr K kInf = std::bit_cast<K>(std::numeric_limits<T>::infinity());
    const K flip = static_cast<K>(K{0} - (bits >> (8 * sizeof(K) - 1))) | kSign;
    const K key = static_cast<K>(bits ^ flip);
    return static_cast<K>(bits & ~kSign) > kInf ? std::numeric_limits<K>::max() : key;
  } else if constexpr (std::is_signed_v<T>) {
    return static_cast<K>(static_cast<K>(x) ^ kSign);
  } else {
    return static_cast<K>(x);
  }
}

// The value of a key (order_key's inverse), as a double: numpy's percentile of the float64 cast.
template <class T>
inline double key_value(std::uint64_t wide) noexcept {
  using K = KeyOf<T>;
  constexpr K kSign = K{1} << (8 * sizeof(K) - 1);
  const auto key = static_cast<K>(wide);
  if constexpr (std::is_same_v<T, bool>) {
    return key != 0 ? 1.0 : 0.0;
  } else if constexpr (std::is_floating_point_v<T>) {
    const K bits = (key & kSign) != 0 ? static_cast<K>(key & ~kSign) : static_cast<K>(~key);
    T x;
    std::memcpy(&x, &bits, sizeof x);
    return static_cast<double>(x);
  } else if constexpr (std::is_signed_v<T>) {
    return static_cast<double>(static_cast<T>(static_cast<K>(key ^ kSign)));
  } else {
    return static_cast<double>(key);
  }
}

// Bits of a key.
template <class T>
inline constexpr int kKeyBits = 8 * static_cast<int>(sizeof(KeyOf<T>));

// Per output: `groups` tables of kHead + 2^digit counters, each headed by the prefix its elements
// must have above the counted digit (kNoPrefix: the table counts nothing) and, in pass 0 for
// floats, the count of NaN elements (their keys, the largest, are counted in the digits too). Pass
// 0 has one table that counts every element. `prefixes` (pass > 0): groups entries per output, by
// output index. digit: 8 or 16 bits, at most the key's.
// Or, when an output has few elements (`gather` > 0, their number): one pass that keeps every
// key, [count, keys...], for the ranks to be selected from (reduce/quantile.cpp).
template <class T, bool Swap>
class QuantileFamily {
 public:
  using K = KeyOf<T>;
  using Partial = std::uint64_t;
  static constexpr FamilyKind kKind = FamilyKind::Histogram;
  static constexpr bool kNeedsIndex = false;
  static constexpr std::uint64_t kNoPrefix = std::numeric_limits<std::uint64_t>::max();
  static constexpr std::int64_t kHead = 2;

  QuantileFamily(int digit, int pass, int groups, const std::uint64_t* prefixes,
                 std::int64_t gather = 0) noexcept
      : digit_(digit),
        buckets_(std::int64_t{1} << digit),
        pass_(pass),
        groups_(pass == 0 ? 1 : groups),
        shift_(kKeyBits<T> - digit * (pass + 1)),
        prefixes_(prefixes),
        gather_(gather) {}

  // Pass 0 over 1-byte keys: a run that holds all n_red elements of its output (the only run
  // of it, then) finds the output's ranks (ranks(n): ascending) by counting nibbles in two
  // passes over the run in cache instead of a 256-counter table: the table it leaves is exact
  // at the 16 high-nibble boundaries and within the groups that hold a rank, each other group's
  // count on its first value, which is all QuantileState::take reads of it.
  using RanksFn = std::function<std::vector<std::uint64_t>(std::uint64_t n)>;
  void select_whole_outputs(std::int64_t n_red, RanksFn ranks) {
    whole_ = n_red;
    ranks_ = std::move(ranks);
  }

  std::int64_t width() const noexcept {
    return gather_ > 0 ? 1 + gather_ : groups_ * (kHead + buckets_);
  }

  void init(Partial& first) const noexcept { init_at(first, -1); }

  // The tables of output `output` (-1: pass 0's, which has no prefix).
  void init_at(Partial& first, std::int64_t output) const noexcept {
    if (gather_ > 0) {
      first = 0;
      return;
    }
    Partial* table = &first;
    for (int g = 0; g < groups_; ++g, table += kHead + buckets_) {
      table[0] = pass_ == 0 || output < 0 ? 0 : prefixes_[output * groups_ + g];
      std::memset(table + 1, 0, sizeof(Partial) * static_cast<std::size_t>(kHead - 1 + buckets_));
    }
  }

  void run(Partial& first, const std::byte* p, std::int64_t n, std::int64_t stride) const {
    with_density<T>(stride, [&](auto dense) {
      const std::int64_t s =
          decltype(dense)::value ? static_cast<std::int64_t>(sizeof(Stored<T>)) : stride;
      if (gather_ > 0) {
        Partial* keys = &first + 1 + first;
        for (std::int64_t i = 0; i < n; ++i) keys[i] = key_at(p + i * s);
        first += static_cast<Partial>(n);
      } else if (pass_ == 0) {
        if (holds_whole_output(n, s) && count_ranks(&first, p, n)) return;
        count_all(&first, p, n, s);
      } else if (groups_ == 1) {
        count_under_prefix(&first, p, n, s);
      } else {
        for (std::int64_t i = 0; i < n; ++i) add(&first, key_at(p + i * s));
      }
    });
  }

  void line(Partial* parts, const std::byte* p, std::int64_t n, std::int64_t stride) const {
    const std::int64_t w = width();
    if (gather_ > 0) {
      for (std::int64_t j = 0; j < n; ++j) {
        Partial* kept = parts + j * w;
        kept[1 + kept[0]++] = key_at(p + j * stride);
      }
      return;
    }
    for (std::int64_t j = 0; j < n; ++j) add(parts + j * w, key_at(p + j * stride));
  }

  // line() over m lines (line k at p + k * line_stride), a block of outputs at a time, so that
  // the block's tables stay in cache while every line adds to them (line after line, each
  // output's elements in line order: the partials line() would give).
  void lines(Partial* parts, const std::byte* p, std::int64_t n, std::int64_t stride,
             std::int64_t m, std::int64_t line_stride) const {
    constexpr std::int64_t kBlock = 64;
    for (std::int64_t j0 = 0; j0 < n; j0 += kBlock) {
      const std::int64_t jn = std::min(kBlock, n - j0);
      for (std::int64_t i = 0; i < m; ++i)
        line(parts + j0 * width(), p + i * line_stride + j0 * stride, jn, stride);
    }
  }

  void merge(Partial& a, const Partial& b) const noexcept {
    Partial* into = &a;
    const Partial* from = &b;
    if (gather_ > 0) {
      std::memcpy(into + 1 + into[0], from + 1,
                  sizeof(Partial) * static_cast<std::size_t>(from[0]));
      into[0] += from[0];
      return;
    }
    for (int g = 0; g < groups_; ++g, into += kHead + buckets_, from += kHead + buckets_) {
      for (std::int64_t k = 1; k < kHead + buckets_; ++k) into[k] += from[k];
    }
  }

 private:
  static K key_at(const std::byte* p) noexcept { return order_key<T>(load<T, Swap>(p)); }

  // One element into the tables whose prefix it has.
  void add(Partial* tables, K key) const noexcept {
    const auto digit = static_cast<std::int64_t>((key >> shift_) & (buckets_ - 1));
    if (pass_ == 0) {
      ++tables[kHead + digit];
      if constexpr (std::is_floating_point_v<T>) tables[1] += key == std::numeric_limits<K>::max();
      return;
    }
    const std::uint64_t above = static_cast<std::uint64_t>(key) >> (shift_ + digit_);
    for (int g = 0; g < groups_; ++g, tables += kHead + buckets_) {
      if (tables[0] == above) ++tables[kHead + digit];
    }
  }

  // Pass 0 over a run into `table`: small digits count into four 32-bit tables on the stack
  // (runs of equal values would otherwise wait on one counter), added to the partial at the end.
  void count_all(Partial* table, const std::byte* p, std::int64_t n, std::int64_t s) const {
    Partial* counts = table + kHead;
    if constexpr (sizeof(K) == 1) {
      if (s == 1) return count_bytes(counts, p, n);  // (no 1-byte type has NaN)
    } else if (!Swap && s == sizeof(K) && digit_ == 16 && n >= kWideRun) {
      // A float key's top 16 bits are all ones only for NaN (the exponent's ones and the
      // mantissa's top bits: never a number nor an infinity), so its digit counts the NaNs.
      const std::uint64_t top = count_digit16(counts, p, n);
      if constexpr (std::is_floating_point_v<T>) table[1] += top;
      return;
    }
    if constexpr (std::is_floating_point_v<T>) {
      for (std::int64_t i = 0; i < n; ++i) {
        table[1] += key_at(p + i * s) == std::numeric_limits<K>::max();
      }
    }
    if (digit_ == 8) {
      constexpr std::int64_t kSmall = 256;
      std::uint32_t local[4][kSmall] = {};
      std::int64_t i = 0;
      // 32-bit counters: flushed before 2^32 counts.
      constexpr std::int64_t kFlush = std::int64_t{1} << 30;
      while (i < n) {
        const std::int64_t end = i + std::min<std::int64_t>(n - i, kFlush);
        for (; i + 4 <= end; i += 4) {
          ++local[0][(key_at(p + i * s) >> shift_) & 0xFF];
          ++local[1][(key_at(p + (i + 1) * s) >> shift_) & 0xFF];
          ++local[2][(key_at(p + (i + 2) * s) >> shift_) & 0xFF];
          ++local[3][(key_at(p + (i + 3) * s) >> shift_) & 0xFF];
        }
        for (; i < end; ++i) ++local[0][(key_at(p + i * s) >> shift_) & 0xFF];
        for (std::int64_t b = 0; b < kSmall; ++b) {
          counts[b] += std::uint64_t{local[0][b]} + local[1][b] + local[2][b] + local[3][b];
          local[0][b] = local[1][b] = local[2][b] = local[3][b] = 0;
        }
      }
    } else {
      for (std::int64_t i = 0; i < n; ++i) {
        ++counts[(key_at(p + i * s) >> shift_) & (buckets_ - 1)];
      }
    }
  }

  // count_all's loop for dense 1-byte keys: eight bytes a load, each to its own 32-bit table
  // (neighbouring pixels often share a value; one table would make each increment wait on the
  // one before), the tables summed into the partial every 2^31 bytes and at the end.
  static void count_bytes(Partial* counts, const std::byte* p, std::int64_t n) noexcept {
    constexpr int kTables = 8;
    std::uint32_t local[kTables][256];
    std::memset(local, 0, sizeof local);
    constexpr std::int64_t kFlush = std::int64_t{1} << 31;
    std::int64_t i = 0;
    while (i < n) {
      const std::int64_t end = i + std::min(n - i, kFlush);
      for (; i + 8 <= end; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, sizeof w);
        for (int k = 0; k < kTables; ++k)
          ++local[k][order_key<T>(static_cast<T>((w >> (8 * k)) & 0xFF))];
      }
      for (; i < end; ++i) {
        std::uint8_t b;
        std::memcpy(&b, p + i, 1);
        ++local[0][order_key<T>(static_cast<T>(b))];
      }
      for (int v = 0; v < 256; ++v) {
        std::uint64_t sum = 0;
        for (int k = 0; k < kTables; ++k) sum += local[k][v];
        counts[v] += sum;
      }
      std::memset(local, 0, sizeof local);
    }
  }

  // A dense run of pass 0 that holds every element of its output (select_whole_outputs), of
  // 1-byte keys, or of 2-byte keys in native order under 16-bit digits: count_ranks may select
  // the output's ranks itself.
  bool holds_whole_output(std::int64_t n, std::int64_t s) const noexcept {
    if constexpr (std::is_same_v<T, bool> || sizeof(K) > 2) {
      return false;
    } else {
      const bool keys_fit = sizeof(K) == 1 || (!Swap && digit_ == 16);
      return keys_fit && s == static_cast<std::int64_t>(sizeof(K)) && n == whole_ && n > 0 &&
             static_cast<bool>(ranks_);
    }
  }

  // holds_whole_output's run: a median (one rank or two neighbours) by search_ranks; other
  // ranks of bytes by the high nibbles' counts, then the low nibbles' within each group that
  // holds a rank. False when it counted nothing (other ranks of words: count_all's table).
  bool count_ranks(Partial* table, const std::byte* p, std::int64_t n) const {
    if constexpr (std::is_same_v<T, bool> || sizeof(K) > 2) {
      return false;  // holds_whole_output never holds for these
    } else {
      const auto* keys = reinterpret_cast<const K*>(p);
      const auto flip = static_cast<K>(std::is_signed_v<T> ? K{1} << (8 * sizeof(K) - 1) : 0);
      const std::vector<std::uint64_t> ranks = ranks_(static_cast<std::uint64_t>(n));
      if (!ranks.empty() && ranks.back() - ranks.front() <= 1) {
        search_ranks(table, keys, n, flip, ranks.front(), ranks.back());
        return true;
      }
      if constexpr (sizeof(K) != 1) {
        return false;
      } else {
        count_nibbles(table, keys, n, flip, ranks);
        return true;
      }
    }
  }

  // count_ranks for bytes and other ranks: the high nibbles' counts, then the low nibbles'
  // within each group that holds a rank.
  static void count_nibbles(Partial* table, const std::uint8_t* bytes, std::int64_t n,
                            std::uint8_t flip, const std::vector<std::uint64_t>& ranks) {
    const KernelTable& k = active_kernels();
    std::uint64_t high[16] = {};
    k.nibble_counts(bytes, n, flip, -1, high);
    bool exact[16] = {};
    std::uint64_t before = 0;
    int g = 0;
    for (std::uint64_t rank : ranks) {
      while (g < 16 && before + high[g] <= rank) before += high[g++];
      if (g < 16) exact[g] = true;
    }
    Partial* counts = table + kHead;
    for (g = 0; g < 16; ++g) {
      if (!exact[g]) {
        counts[16 * g] += high[g];
        continue;
      }
      std::uint64_t low[16] = {};
      k.nibble_counts(bytes, n, flip, g, low);
      for (int v = 0; v < 16; ++v) counts[16 * g + v] += low[v];
    }
  }

  // A run holding a whole output, for one rank or two neighbouring ones (a median) of 1- or
  // 2-byte keys: the lower rank's key by a search of passes over the run in cache, each
  // counting the keys below three thresholds (256 -> 64 -> 16 -> 4 -> 1 candidates: four passes
  // for bytes, eight for words), then, when the upper rank lies past that key, the smallest key
  // above it (one more pass). Three compares a register per pass, against nibble_counts' 16 +
  // 16 in two, or a 2^16-counter table's random increments. The table: the keys below the
  // found one counted at key 0, the found one's own, and those above at the next key up (or
  // the largest): exact where take reads these ranks, and its total the run's.
  template <class Key>
  static void search_ranks(Partial* table, const Key* keys, std::int64_t n, Key flip,
                           std::uint64_t r0, std::uint64_t r1) {
    // Bytes: a window of the sample's would hold too much of a run (few distinct values).
    if constexpr (sizeof(Key) == 2) {
      if (sample_ranks(table, keys, n, flip, r0, r1)) return;
    }
    const KernelTable& k = active_kernels();
    constexpr std::uint64_t kKeys = std::uint64_t{1} << (8 * sizeof(Key));
    const auto count_below = [&k, keys, n, flip](const Key* t, std::uint64_t* c) {
      if constexpr (sizeof(Key) == 1) {
        k.count_below_u8(keys, n, flip, t, c);
      } else {
        k.count_below_u16(keys, n, flip, t, c);
      }
    };
    // #{key < lo} <= r0 < #{key < hi}.
    std::uint64_t lo = 0, hi = kKeys, below_lo = 0, below_hi = static_cast<std::uint64_t>(n);
    while (hi - lo > 1) {
      const std::uint64_t step = (hi - lo) / 4;
      Key t[3];
      std::uint64_t c[3] = {};
      for (int j = 0; j < 3; ++j)
        t[j] = static_cast<Key>(lo + static_cast<std::uint64_t>(j + 1) * step);
      count_below(t, c);
      int j = 0;
      while (j < 3 && c[j] <= r0) ++j;
      const std::uint64_t new_lo = j > 0 ? t[j - 1] : lo;
      if (j > 0) below_lo = c[j - 1];
      hi = j < 3 ? t[j] : new_lo + step;
      if (j < 3) below_hi = c[j];
      lo = new_lo;
    }
    Partial* counts = table + kHead;
    const std::uint64_t rest = static_cast<std::uint64_t>(n) - below_hi;
    counts[0] += below_lo;
    counts[lo] += below_hi - below_lo;
    if (rest > 0) {
      std::int64_t up = static_cast<std::int64_t>(kKeys) - 1;
      if (r1 >= below_hi) {
        if constexpr (sizeof(Key) == 1) {
          up = k.min_above_u8(keys, n, flip, static_cast<Key>(lo));
        } else {
          up = k.min_above_u16(keys, n, flip, static_cast<Key>(lo));
        }
      }
      counts[std::min<std::int64_t>(up, static_cast<std::int64_t>(kKeys) - 1)] += rest;
    }
  }

  // search_ranks' first try, on long runs: a sample of 4096 keys (evenly spaced) puts the ranks
  // in a window of keys with a margin of three standard deviations of a sample rank, and one
  // pass counts the keys below the window and each key inside it (window_counts). When the
  // counts show the ranks inside, the table is exact for them (the keys below counted at key
  // 0, those above at the largest); else (a sample that misled: rare) the search runs.
  template <class Key>
  static bool sample_ranks(Partial* table, const Key* keys, std::int64_t n, Key flip,
                           std::uint64_t r0, std::uint64_t r1) {
    constexpr std::int64_t kSample = 4096;
    constexpr std::int64_t kKeys = std::int64_t{1} << (8 * sizeof(Key));
    if (n < 16 * kSample) return false;
    thread_local std::vector<Key> sample;
    sample.resize(kSample);
    // One key from each of kSample equal blocks, at a scrambled place in its block: a fixed
    // stride would see the same few columns of every image row.
    const std::int64_t step = n / kSample;
    for (std::int64_t i = 0; i < kSample; ++i) {
      const auto offset =
          static_cast<std::int64_t>((static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull >> 32) %
                                    static_cast<std::uint64_t>(step));
      sample[static_cast<std::size_t>(i)] = static_cast<Key>(keys[i * step + offset] ^ flip);
    }
    const double nn = static_cast<double>(n);
    const double p0 = static_cast<double>(r0) / nn, p1 = static_cast<double>(r1 + 1) / nn;
    const double sigma = std::sqrt(static_cast<double>(kSample) * 0.25);  // p(1 - p) <= 1/4
    const auto at_lo = static_cast<std::int64_t>(std::floor(p0 * kSample - 3 * sigma));
    const auto at_hi = static_cast<std::int64_t>(std::ceil(p1 * kSample + 3 * sigma));
    std::int64_t first = 0, last = kKeys - 1;
    if (at_lo > 0) {
      std::nth_element(sample.begin(), sample.begin() + at_lo, sample.end());
      first = sample[static_cast<std::size_t>(at_lo)];
    }
    if (at_hi < kSample - 1) {
      const auto from = sample.begin() + std::max<std::int64_t>(at_lo, 0);
      std::nth_element(from, sample.begin() + at_hi, sample.end());
      last = sample[static_cast<std::size_t>(at_hi)];
    }
    const auto width = static_cast<std::uint32_t>(last - first + 1);
    thread_local std::vector<std::uint32_t> hist;
    hist.assign(width, 0);
    std::uint64_t below = 0;
    const KernelTable& k = active_kernels();
    if constexpr (sizeof(Key) == 1) {
      k.window_counts_u8(keys, n, flip, static_cast<Key>(first), width, &below, hist.data());
    } else {
      k.window_counts_u16(keys, n, flip, static_cast<Key>(first), width, &below, hist.data());
    }
    std::uint64_t inside = 0;
    for (std::uint32_t v : hist) inside += v;
    if (below > r0 || r1 >= below + inside) return false;
    Partial* counts = table + kHead;
    counts[0] += below;
    for (std::uint32_t j = 0; j < width; ++j) counts[first + j] += hist[j];
    counts[kKeys - 1] += static_cast<std::uint64_t>(n) - below - inside;
    return true;
  }

  // A refining pass's run into one table: the elements under its prefix are few for spread
  // data, so the loop is a compare per element (no table touched) but for them.
  void count_under_prefix(Partial* table, const std::byte* p, std::int64_t n,
                          std::int64_t s) const {
    if (table[0] == kNoPrefix) return;
    const auto prefix = static_cast<K>(table[0]);
    const int above = shift_ + digit_;
    Partial* counts = table + kHead;
    // Blocks without an element under the prefix are skipped after a loop that only compares
    // (vector code); the others count element by element.
    constexpr std::int64_t kBlock = 32;
    for (std::int64_t i0 = 0; i0 < n; i0 += kBlock) {
      const std::int64_t end = std::min(n, i0 + kBlock);
      if (s == sizeof(K) && !has_prefix(p, i0, end, above, prefix)) continue;
      for (std::int64_t i = i0; i < end; ++i) {
        const K key = key_at(p + i * s);
        if (static_cast<K>(key >> above) == prefix) ++counts[(key >> shift_) & (buckets_ - 1)];
      }
    }
  }

  // Whether a key of the dense elements [i0, end) at p has `prefix` above bit `above`.
  static bool has_prefix(const std::byte* p, std::int64_t i0, std::int64_t end, int above,
                         K prefix) noexcept {
    constexpr auto kItem = static_cast<std::int64_t>(sizeof(K));  // a constant stride: vectors
    std::uint32_t hits = 0;
    for (std::int64_t i = i0; i < end; ++i) {
      hits += static_cast<std::uint32_t>(static_cast<K>(key_at(p + i * kItem) >> above) == prefix);
    }
    return hits != 0;
  }

  // count_all's loop for long dense runs under 16-bit digits: 32-bit counters in a table of
  // this thread's (256 KiB; the 64-bit partial's 512 KiB would not stay in L2 beside the data),
  // added to the partial at the end.
  static constexpr std::int64_t kWideRun = std::int64_t{1} << 16;
  // Returns how many keys had the top digit (0xFFFF).
  std::uint64_t count_digit16(Partial* counts, const std::byte* p, std::int64_t n) const {
    constexpr std::int64_t kItem = sizeof(K);
    thread_local std::vector<std::uint32_t> local;
    local.assign(std::size_t{1} << 16, 0);
    std::uint32_t* c = local.data();
    constexpr std::int64_t kFlush = std::int64_t{1} << 31;
    std::uint64_t top = 0;
    std::int64_t i = 0;
    while (i < n) {
      const std::int64_t end = i + std::min(n - i, kFlush);
      for (; i < end; ++i) ++c[(key_at(p + i * kItem) >> shift_) & 0xFFFF];
      top += c[0xFFFF];
      for (std::int64_t v = 0; v < (std::int64_t{1} << 16); ++v) {
        counts[v] += c[v];
        c[v] = 0;
      }
    }
    return top;
  }

  std::int64_t whole_ = -1;  // select_whole_outputs' n_red
  RanksFn ranks_;
  int digit_;
  std::int64_t buckets_;
  int pass_;
  int groups_;
  int shift_;
  const std::uint64_t* prefixes_;
  std::int64_t gather_;
};

}  // namespace mmc::kernels
