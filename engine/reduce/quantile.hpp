// Exact median and percentiles out of core (median, nanmedian, percentile, nanpercentile): the
// ranks each output needs, found digit by digit from the counts of QuantileFamily
// (kernels/quantile.hpp), and numpy's arithmetic on the values found. Not a template: the
// element type reaches it as its key's width and a function from key to value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mmc/reduce.hpp"

namespace mmc::detail {

bool is_quantile(ReduceOp op) noexcept;
bool is_percentile(ReduceOp op) noexcept;

// The most ranks one output may need for `ops` (2 for a median, 2 per q for a percentile): the
// most tables a refining pass counts per output. 0 when no op is a quantile.
int quantile_groups(const std::vector<ReduceOp>& ops, const std::vector<double>& q) noexcept;

// The ranks (0-based, ascending, once each) that an output of n elements (NaN left out) needs
// for the quantile ops among `ops`: a median's middle one or two, each q's numpy neighbours.
std::vector<std::uint64_t> quantile_ranks(const std::vector<ReduceOp>& ops,
                                          const std::vector<double>& q, std::uint64_t n);

// The digit a pass counts, for keys of key_bits over outputs of n_red elements each: 16 bits
// when an output has enough elements for a table of 2^16 counters to pay for itself, else 8
// (256 counters, more passes over wider types). Exact either way: only the passes change.
int quantile_digit_bits(int key_bits, std::int64_t n_red) noexcept;

// Whether outputs of n_red elements keep their keys (one pass, then selection) rather than count
// them: at most 4096 elements per output, and for keys of one digit only when the keys take
// less room than the table.
bool quantile_gathers(int key_bits, std::int64_t n_red) noexcept;

// Bytes of one output's partials in a quantile pass: the largest pass's tables.
std::int64_t quantile_partial_bytes(const std::vector<ReduceOp>& ops, const std::vector<double>& q,
                                    std::size_t itemsize, std::int64_t n_red) noexcept;

class QuantileState {
 public:
  struct Target {
    ReduceOp op;
    std::byte* out;  // the op's result: n_out doubles, or len(q) × n_out for a percentile
  };
  // key_bits/digit_bits: the element type's (kernels::kKeyBits, kDigitBits). floats: pass 0's
  // last table entry counts NaN. value: a key's value as a double.
  // gather: pass 0 keeps each output's keys (quantile_gathers) instead of counting them.
  QuantileState(std::vector<Target> targets, std::vector<double> q, std::int64_t n_out,
                int key_bits, int digit_bits, bool floats, bool gather,
                double (*value)(std::uint64_t));

  int passes() const noexcept { return gather_ ? 1 : key_bits_ / digit_bits_; }
  int groups() const noexcept { return groups_; }

  // Output `output`'s merged tables after pass `pass` (as QuantileFamily lays them out).
  void take(int pass, std::int64_t output, const std::uint64_t* tables);
  // The prefixes pass `pass` (> 0) counts under: *tables per output, the most distinct prefixes
  // any output has (QuantileFamily's kNoPrefix for none). False when no output has anything
  // left to refine.
  bool prepare(int pass, std::vector<std::uint64_t>* prefixes, int* tables);
  // Writes every output's results, once the last pass is taken.
  void finish() const;

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};
  std::uint64_t* rank_at(std::int64_t output) { return &ranks_[slot(output)]; }
  std::size_t slot(std::int64_t output) const noexcept {
    return static_cast<std::size_t>(output) * static_cast<std::size_t>(groups_);
  }
  // The value of output `output`'s element of rank `rank` (one of its targets).
  double value_of_rank(std::int64_t output, std::uint64_t rank) const;

  std::vector<Target> targets_;
  std::vector<ReduceOp> ops_;  // targets_' ops
  std::vector<double> q_;
  std::int64_t n_out_;
  int key_bits_;
  int digit_bits_;
  bool floats_;
  bool gather_;
  double (*value_)(std::uint64_t);
  int groups_;
  int tables_ = 1;  // tables per output in the pass being counted (prepare's)
  // Per output: elements that are not NaN, whether any is NaN.
  std::vector<std::uint64_t> valid_;
  std::vector<std::uint8_t> has_nan_;
  // Per output and target slot (groups_ each): the rank asked (kNone: unused), the rank left
  // within the prefix, and the key's bits found so far (the prefix).
  std::vector<std::uint64_t> ranks_;
  std::vector<std::uint64_t> left_;
  std::vector<std::uint64_t> prefix_;
};

}  // namespace mmc::detail
