// Exact median and percentiles: ranks from counts, digit by digit, and numpy's interpolation.
#include "reduce/quantile.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mmc/error.hpp"

namespace mmc::detail {
namespace {

bool is_median(ReduceOp op) noexcept { return op == ReduceOp::Median || op == ReduceOp::NanMedian; }
bool quantile_skips_nan(ReduceOp op) noexcept {
  return op == ReduceOp::NanMedian || op == ReduceOp::NanPercentile;
}

// numpy's linear method (np.percentile's _get_indexes and _get_gamma): the ranks of the two
// neighbours of the virtual index (n - 1) * q of n sorted values, and the weight of the second.
struct QuantileNeighbours {
  std::uint64_t below;
  std::uint64_t above;
  double gamma;
};

QuantileNeighbours quantile_neighbours(std::uint64_t n, double fraction) {
  const double virtual_index = static_cast<double>(n - 1) * fraction;
  if (virtual_index >= static_cast<double>(n - 1)) {
    // numpy takes index -1 for both, and the weight against that -1.
    return {n - 1, n - 1, virtual_index - -1.0};
  }
  const double floor = std::floor(virtual_index);
  const auto below = static_cast<std::uint64_t>(floor);
  return {below, below + 1, virtual_index - floor};
}

// numpy's _lerp, term for term.
double numpy_lerp(double a, double b, double t) {
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

constexpr double kQuantileNan = std::numeric_limits<double>::quiet_NaN();
// A table's counters before its digits (QuantileFamily::kTableHead): the prefix, the NaN count.
constexpr std::int64_t kTableHead = 2;

}  // namespace

bool is_percentile(ReduceOp op) noexcept {
  return op == ReduceOp::Percentile || op == ReduceOp::NanPercentile;
}

bool is_quantile(ReduceOp op) noexcept { return is_median(op) || is_percentile(op); }

int quantile_groups(const std::vector<ReduceOp>& ops, const std::vector<double>& q) noexcept {
  const bool median = std::any_of(ops.begin(), ops.end(), is_median);
  const bool percentile = std::any_of(ops.begin(), ops.end(), is_percentile);
  return (median ? 2 : 0) + (percentile ? 2 * static_cast<int>(q.size()) : 0);
}

std::vector<std::uint64_t> quantile_ranks(const std::vector<ReduceOp>& ops,
                                          const std::vector<double>& q, std::uint64_t n) {
  std::vector<std::uint64_t> ranks;
  if (n == 0) return ranks;
  for (ReduceOp op : ops) {
    if (is_median(op)) {
      ranks.push_back((n - 1) / 2);
      ranks.push_back(n / 2);
    } else if (is_percentile(op)) {
      for (double fraction : q) {
        const QuantileNeighbours nb = quantile_neighbours(n, fraction / 100);
        ranks.push_back(nb.below);
        ranks.push_back(nb.above);
      }
    }
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  return ranks;
}

int quantile_digit_bits(int key_bits, std::int64_t n_red) noexcept {
  constexpr std::int64_t kWideDigitElements = std::int64_t{1} << 18;
  return key_bits > 8 && n_red >= kWideDigitElements ? 16 : 8;
}

bool quantile_gathers(int key_bits, std::int64_t n_red) noexcept {
  constexpr std::int64_t kGatherMax = 4096;
  if (n_red > kGatherMax) return false;
  // Keys of one digit (1-byte types) are counted in one pass anyway: their keys are kept only
  // when they take less room than the table (a u8 per-pixel median over 1024 images sends
  // 258 counts per output, not 1025 keys).
  const int digit = quantile_digit_bits(key_bits, n_red);
  if (key_bits <= digit) return 1 + n_red < kTableHead + (std::int64_t{1} << digit);
  return true;
}

std::int64_t quantile_partial_bytes(const std::vector<ReduceOp>& ops, const std::vector<double>& q,
                                    std::size_t itemsize, std::int64_t n_red) noexcept {
  const int groups = quantile_groups(ops, q);
  if (groups == 0) return 0;
  const int key_bits = 8 * static_cast<int>(itemsize);
  if (quantile_gathers(key_bits, n_red)) {
    return (1 + n_red) * static_cast<std::int64_t>(sizeof(std::uint64_t));
  }
  const int digit = quantile_digit_bits(key_bits, n_red);
  const std::int64_t buckets = std::int64_t{1} << digit;
  // Pass 0 has one table; a refining pass one per distinct prefix, at most one per rank and
  // one per element.
  const std::int64_t tables =
      key_bits > digit ? std::min<std::int64_t>(groups, std::max<std::int64_t>(n_red, 1)) : 1;
  return tables * (kTableHead + buckets) * static_cast<std::int64_t>(sizeof(std::uint64_t));
}

QuantileState::QuantileState(std::vector<Target> targets, std::vector<double> q, std::int64_t n_out,
                             int key_bits, int digit_bits, bool floats, bool gather,
                             double (*value)(std::uint64_t))
    : targets_(std::move(targets)),
      q_(std::move(q)),
      n_out_(n_out),
      key_bits_(key_bits),
      digit_bits_(digit_bits),
      floats_(floats),
      gather_(gather),
      value_(value) {
  for (const Target& t : targets_) ops_.push_back(t.op);
  groups_ = quantile_groups(ops_, q_);
  const auto outputs = static_cast<std::size_t>(n_out_);
  valid_.assign(outputs, 0);
  has_nan_.assign(outputs, 0);
  ranks_.assign(outputs * static_cast<std::size_t>(groups_), kNone);
  left_.assign(ranks_.size(), kNone);
  prefix_.assign(ranks_.size(), 0);
}

void QuantileState::take(int pass, std::int64_t output, const std::uint64_t* tables) {
  const std::int64_t buckets = std::int64_t{1} << digit_bits_;
  const std::size_t at = slot(output);
  const auto o = static_cast<std::size_t>(output);
  if (pass == 0) {
    // Kept keys: [count, keys...]; NaN keys are the largest.
    const std::uint64_t kNanKey =
        key_bits_ == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << key_bits_) - 1;
    std::uint64_t nan = 0;
    if (gather_ && floats_) {
      nan = static_cast<std::uint64_t>(std::count(tables + 1, tables + 1 + tables[0], kNanKey));
    } else if (floats_) {
      nan = tables[1];
    }
    // The elements counted: n_red, or fewer when nodata or a mask left some out.
    std::uint64_t total = 0;
    if (gather_) {
      total = tables[0];
    } else {
      for (std::int64_t b = 0; b < buckets; ++b) total += tables[kTableHead + b];
    }
    const std::uint64_t n = total - nan;
    valid_[o] = n;
    has_nan_[o] = nan > 0 ? 1 : 0;
    const bool wanted = std::any_of(targets_.begin(), targets_.end(), [nan](const Target& t) {
      return nan == 0 || quantile_skips_nan(t.op);
    });
    if (n == 0 || !wanted) return;
    const std::vector<std::uint64_t> ranks = quantile_ranks(ops_, q_, n);
    std::copy(ranks.begin(), ranks.end(), ranks_.begin() + static_cast<std::ptrdiff_t>(at));
    std::copy(ranks.begin(), ranks.end(), left_.begin() + static_cast<std::ptrdiff_t>(at));
    if (gather_) {
      // Select each rank from the kept keys, ascending, each search past the one before.
      std::vector<std::uint64_t> keys(tables + 1, tables + 1 + tables[0]);
      auto from = keys.begin();
      for (std::size_t k = 0; k < ranks.size(); ++k) {
        const auto nth = keys.begin() + static_cast<std::ptrdiff_t>(ranks[k]);
        std::nth_element(from, nth, keys.end());
        prefix_[at + k] = *nth;
        left_[at + k] = 0;
        from = nth + 1;
      }
      return;
    }
  }
  // Each table: find the digit of every target counted under its prefix (targets ascending in
  // rank, so one scan of the table serves them all). The new prefixes are kept aside until
  // every table is read: a longer prefix may equal another table's header.
  std::uint64_t next_left[64], next_prefix[64];
  bool moved[64] = {};
  if (groups_ > 64) throw Error(ErrorCode::Internal, "quantile: too many ranks per output");
  const int tables_here = pass == 0 ? 1 : tables_;
  for (int g = 0; g < tables_here; ++g) {
    const std::uint64_t* table = tables + static_cast<std::ptrdiff_t>(g) * (kTableHead + buckets);
    const std::uint64_t header = table[0];
    if (pass > 0 && header == kNone) continue;
    std::int64_t bucket = 0;
    std::uint64_t before = 0;  // elements of the prefix in buckets below `bucket`
    for (int k = 0; k < groups_; ++k) {
      const std::size_t s = at + static_cast<std::size_t>(k);
      if (ranks_[s] == kNone || moved[k] || (pass > 0 && prefix_[s] != header)) continue;
      while (bucket < buckets && before + table[kTableHead + bucket] <= left_[s]) {
        before += table[kTableHead + bucket];
        ++bucket;
      }
      if (bucket == buckets) {
        throw Error(ErrorCode::Internal, "quantile: rank " + std::to_string(ranks_[s]) +
                                             " not counted in pass " + std::to_string(pass));
      }
      moved[k] = true;
      next_left[k] = left_[s] - before;
      next_prefix[k] = (prefix_[s] << digit_bits_) | static_cast<std::uint64_t>(bucket);
    }
  }
  for (int k = 0; k < groups_; ++k) {
    const std::size_t s = at + static_cast<std::size_t>(k);
    if (!moved[k]) {
      if (ranks_[s] != kNone) {
        throw Error(ErrorCode::Internal, "quantile: rank " + std::to_string(ranks_[s]) +
                                             " has no table in pass " + std::to_string(pass));
      }
      continue;
    }
    left_[s] = next_left[k];
    prefix_[s] = next_prefix[k];
  }
}

bool QuantileState::prepare(int pass, std::vector<std::uint64_t>* prefixes, int* tables) {
  (void)pass;
  // Distinct prefixes per output, the most of them first: the tables of the pass.
  std::vector<std::uint64_t> distinct(static_cast<std::size_t>(groups_));
  int most = 0;
  for (int round = 0; round < 2; ++round) {
    if (round == 1) {
      if (most == 0) return false;
      prefixes->assign(static_cast<std::size_t>(n_out_) * static_cast<std::size_t>(most), kNone);
    }
    for (std::int64_t output = 0; output < n_out_; ++output) {
      const std::size_t at = slot(output);
      int used = 0;
      for (int k = 0; k < groups_; ++k) {
        const std::size_t s = at + static_cast<std::size_t>(k);
        if (ranks_[s] == kNone) continue;
        if (std::find(distinct.begin(), distinct.begin() + used, prefix_[s]) ==
            distinct.begin() + used) {
          distinct[static_cast<std::size_t>(used++)] = prefix_[s];
        }
      }
      if (round == 0) {
        most = std::max(most, used);
      } else {
        std::copy(distinct.begin(), distinct.begin() + used,
                  prefixes->begin() + output * static_cast<std::int64_t>(most));
      }
    }
  }
  tables_ = most;
  *tables = most;
  return true;
}

double QuantileState::value_of_rank(std::int64_t output, std::uint64_t rank) const {
  const std::size_t at = slot(output);
  for (int k = 0; k < groups_; ++k) {
    const std::size_t s = at + static_cast<std::size_t>(k);
    if (ranks_[s] == rank) return value_(prefix_[s]);
  }
  throw Error(ErrorCode::Internal, "quantile: rank " + std::to_string(rank) + " was not found");
}

void QuantileState::finish() const {
  const auto put = [](std::byte* out, std::size_t index, double v) {
    std::memcpy(out + index * sizeof(double), &v, sizeof v);
  };
  for (std::int64_t output = 0; output < n_out_; ++output) {
    const auto o = static_cast<std::size_t>(output);
    const std::uint64_t n = valid_[o];
    for (const Target& t : targets_) {
      const bool nan = n == 0 || (has_nan_[o] != 0 && !quantile_skips_nan(t.op));
      if (is_median(t.op)) {
        double v = kQuantileNan;
        if (!nan) {
          const double lo = value_of_rank(output, (n - 1) / 2);
          // np.median: the mean of the middle one or two (their sum, then / 2).
          v = n % 2 == 1 ? lo : (lo + value_of_rank(output, n / 2)) / 2;
        }
        put(t.out, o, v);
        continue;
      }
      for (std::size_t k = 0; k < q_.size(); ++k) {
        double v = kQuantileNan;
        if (!nan) {
          const QuantileNeighbours nb = quantile_neighbours(n, q_[k] / 100);
          v = numpy_lerp(value_of_rank(output, nb.below), value_of_rank(output, nb.above),
                         nb.gamma);
        }
        put(t.out, k * static_cast<std::size_t>(n_out_) + o, v);
      }
    }
  }
}

}  // namespace mmc::detail
