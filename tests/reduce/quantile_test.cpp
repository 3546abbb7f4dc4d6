// median, nanmedian, percentile and nanpercentile against numpy's answers for the float64 cast
// (equal values; a zero's sign is numpy's partition order, not compared)
// (tests/fixtures/quantile_cases.py): every dtype in both byte orders, C and F order, NaN, inf,
// -0.0, the dtype's extremes, runs of equal values, slices of NaN only; the same bits for every
// backend and task size, on a warm Pool (whose workers get the refining passes' prefixes in
// each batch), and for zarr and HDF5 chunked copies of the arrays.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/mapped_file.hpp"
#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "mmc/reduce.hpp"
#include "support/test_support.hpp"

namespace mmc::quantile_test {
namespace {

const std::vector<std::string> kOps = {"median", "nanmedian", "percentile", "nanpercentile"};

struct Expected {
  Shape shape;
  std::size_t offset = 0;
};

struct Case {
  std::string input, zarr, h5;
  bool axes_given = false;
  std::vector<int> axes;
  std::vector<double> q;
  std::vector<Expected> results;  // per op of kOps
};

class Quantile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = &test::shared_fixture("quantile_cases.py");
    for (const auto& j : nlohmann::json::parse(test::read_file(dir_->file("cases.json")))) {
      Case c;
      c.input = j["input"];
      if (!j["zarr"].is_null()) c.zarr = j["zarr"];
      if (!j["h5"].is_null()) c.h5 = j["h5"];
      c.axes_given = !j["axes"].is_null();
      if (c.axes_given) c.axes = j["axes"].get<std::vector<int>>();
      c.q = j["q"].get<std::vector<double>>();
      for (const std::string& op : kOps) {
        c.results.push_back({j["results"][op]["shape"].get<Shape>(), j["results"][op]["offset"]});
      }
      cases_.push_back(c);
    }
    expected_ = std::make_unique<MappedFile>(
        MappedFile::open(dir_->file("expected.bin"), MapMode::ReadOnly));
  }
  static void TearDownTestSuite() {
    cases_.clear();
    expected_.reset();
    dir_ = nullptr;
  }

  // A case of a few hundred elements (the large ones have 2^18 or more per output).
  static bool small(const Case& c) { return open_array(dir_->file(c.input)).meta().size() < 10000; }

  static ReduceOptions options_for(const Case& c) {
    ReduceOptions o;
    for (const std::string& op : kOps) o.ops.push_back(parse_reduce_op(op));
    o.axes = c.axes;
    o.axes_given = c.axes_given;
    o.q = c.q;
    return o;
  }

  // Each op's result against numpy's: the same bits, or both NaN. Returns the values compared.
  static std::int64_t expect_numpy(const Case& c, const std::vector<ReduceResult>& got,
                                   const std::string& how) {
    std::int64_t compared = 0;
    EXPECT_EQ(got.size(), kOps.size());
    for (std::size_t k = 0; k < kOps.size() && k < got.size(); ++k) {
      const std::string what = c.input + " " + kOps[k] + " (" + how + ")";
      const ReduceResult& r = got[k];
      EXPECT_EQ(r.dtype, DType(TypeId::F64)) << what;
      EXPECT_EQ(r.shape, c.results[k].shape) << what;
      if (r.shape != c.results[k].shape) continue;
      const auto* want = reinterpret_cast<const double*>(expected_->data() + c.results[k].offset);
      const double* have = r.as<double>();
      int shown = 0;
      for (std::int64_t i = 0; i < r.size(); ++i, ++compared) {
        // Equal values (a zero's sign aside: numpy's partition leaves -0.0 and 0.0 in any
        // order), or both NaN.
        const bool same = have[i] == want[i] || (std::isnan(have[i]) && std::isnan(want[i]));
        if (!same && shown++ < 3) {
          ADD_FAILURE() << what << ": element " << i << " is " << have[i] << ", numpy says "
                        << want[i];
        }
      }
    }
    return compared;
  }

  static const test::FixtureDir* dir_;
  static std::vector<Case> cases_;
  static std::unique_ptr<MappedFile> expected_;
};

const test::FixtureDir* Quantile::dir_ = nullptr;
std::vector<Case> Quantile::cases_;
std::unique_ptr<MappedFile> Quantile::expected_;

TEST_F(Quantile, EveryCaseMatchesNumpySerialAndOnThreadsWithSmallTasks) {
  ASSERT_GE(cases_.size(), 60u);
  std::int64_t compared = 0;
  for (const Case& c : cases_) {
    const AnyArray array = open_array(dir_->file(c.input));
    ReduceOptions o = options_for(c);
    o.pool.backend = Backend::Serial;
    compared += expect_numpy(c, reduce_each(array, o), "serial");
    // Small tasks split slices into pieces, whose counts merge; threads run them. (Not for the
    // large cases: a piece of a few elements against a table of 2^16 counts.)
    o.pool.backend = Backend::Thread;
    o.pool.n_jobs = 3;
    o.task_bytes = small(c) ? 200 : 1 << 20;
    compared += expect_numpy(c, reduce_each(array, o), "threads, 200-byte tasks");
  }
  EXPECT_GT(compared, 30000);
}

TEST_F(Quantile, ProcessesAndAWarmPoolGiveNumpysAnswers) {
  ParallelOptions parallel;
  parallel.backend = Backend::Process;
  parallel.n_jobs = 2;
  Pool pool(parallel);
  for (const Case& c : cases_) {
    const AnyArray array = open_array(dir_->file(c.input));
    ReduceOptions o = options_for(c);
    o.pool.n_jobs = 2;
    o.task_bytes = small(c) ? 512 : 1 << 20;
    expect_numpy(c, reduce_each(array, o), "processes");
    expect_numpy(c, reduce_each(array, o, pool), "warm pool");
  }
}

TEST_F(Quantile, ChunkedZarrAndHdf5CopiesGiveNumpysAnswers) {
  int chunked = 0;
  std::size_t index = 0;
  for (const Case& c : cases_) {
    // Threads, and forked workers for every third case (each call forks).
    const bool processes = index++ % 3 == 0;
    for (const std::string& store : {c.zarr, c.h5}) {
      if (store.empty()) continue;
      const std::string path =
          dir_->file(store) + (store.ends_with(".h5") ? std::string(":/data") : std::string());
      const AnyArray array = open_array(path);
      ASSERT_NE(array.chunked(), nullptr) << path;
      ReduceOptions o = options_for(c);
      o.pool.n_jobs = 2;
      if (!processes) o.pool.backend = Backend::Thread;
      o.task_bytes = 300;
      expect_numpy(c, reduce_each(array, o), store);
      ++chunked;
    }
  }
  EXPECT_GE(chunked, 40);
}

TEST_F(Quantile, EachOpAloneGivesTheBitsOfTheOpsTogether) {
  std::size_t index = 0;
  for (const Case& c : cases_) {
    if (index++ % 2 == 1) continue;  // every other case: the cases vary little in this respect
    const AnyArray array = open_array(dir_->file(c.input));
    const std::vector<ReduceResult> together = reduce_each(array, options_for(c));
    for (std::size_t k = 0; k < kOps.size(); ++k) {
      ReduceOptions o = options_for(c);
      o.ops = {parse_reduce_op(kOps[k])};
      const ReduceResult alone = reduce(array, o);
      EXPECT_TRUE(alone.data == together[k].data) << c.input << " " << kOps[k];
      EXPECT_EQ(alone.shape, together[k].shape) << c.input << " " << kOps[k];
    }
    // With other families in the same pass.
    ReduceOptions mixed = options_for(c);
    mixed.ops.insert(mixed.ops.begin(), {ReduceOp::Mean, ReduceOp::Max});
    const std::vector<ReduceResult> with_others = reduce_each(array, mixed);
    for (std::size_t k = 0; k < kOps.size(); ++k) {
      EXPECT_TRUE(with_others[k + 2].data == together[k].data) << c.input << " " << kOps[k];
    }
  }
}

TEST(QuantileOptions, BadPercentilesAndEmptyAxesAreRefused) {
  test::TempDir dir;
  const std::string path = dir.file("a.npy");
  test::run_python_code(
      "import numpy as np, sys; np.save(sys.argv[1], np.arange(24, dtype='f4').reshape(2, 3, 4))",
      {path});
  const AnyArray array = open_array(path);
  ReduceOptions o;
  o.op = ReduceOp::Percentile;
  test::expect_error([&] { reduce(array, o); }, ErrorCode::InvalidArgument, {"percentile", "q"});
  o.q = {50, 100.5};
  test::expect_error([&] { reduce(array, o); }, ErrorCode::InvalidArgument,
                     {"100.5", "outside [0, 100]"});
  o.q = {std::nan("")};
  test::expect_error([&] { reduce(array, o); }, ErrorCode::InvalidArgument, {"outside"});
  // An empty axis: np.percentile raises, np.median gives NaN.
  const std::string empty = dir.file("empty.npy");
  test::run_python_code("import numpy as np, sys; np.save(sys.argv[1], np.zeros((3, 0), 'u2'))",
                        {empty});
  const AnyArray none = open_array(empty);
  o.q = {50};
  test::expect_error([&] { reduce(none, o); }, ErrorCode::InvalidArgument, {"empty axis"});
  o.op = ReduceOp::Median;
  const ReduceResult median = reduce(none, o);
  ASSERT_EQ(median.shape, (Shape{3}));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(median.as<double>()[i]));
  EXPECT_EQ(result_shape(array.meta(),
                         [] {
                           ReduceOptions p;
                           p.op = ReduceOp::NanPercentile;
                           p.q = {1, 2, 3};
                           return p;
                         }()),
            (Shape{3, 2}));
}

}  // namespace
}  // namespace mmc::quantile_test
