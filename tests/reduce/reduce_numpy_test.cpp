// Cross-check of every op, dtype, byte order, memory order and axes combination against the
// answers numpy computed on the same .npy files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mmc/error.hpp"
#include "mmc/reduce.hpp"
#include "mmc/source.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

struct Case {
  std::string input, op;
  bool float16_input = false;  // widened to float64 (io/widened.hpp) before any task runs
  bool axes_given = false;
  std::vector<int> axes;
  int ddof = 0;
  DType dtype;                  // of numpy's answer
  Shape shape;                  // of numpy's answer
  std::size_t offset = 0;       // of numpy's answer in expected.bin
  std::int64_t tolerance = -1;  // offset of the per-output tolerances, -1: exact
  std::int64_t bins = 10;       // histogram
  bool range_given = false;
  double range_lo = 0, range_hi = 0;
  bool error = false;  // numpy refuses the case (a histogram of NaN without a range)
};

class ReduceNumpy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = &test::shared_fixture("reduce_cases.py");
    const auto json = nlohmann::json::parse(test::read_file(dir_->file("cases.json")));
    for (const auto& j : json) {
      Case c;
      c.input = j["input"];
      c.float16_input = j.value("input_descr", std::string()).find("f2") != std::string::npos;
      c.op = j["op"];
      c.dtype = DType::from_numpy_descr(j["descr"].get<std::string>());
      c.shape = j["shape"].get<Shape>();
      c.offset = j["offset"];
      c.tolerance = j["tolerance"].is_null() ? -1 : j["tolerance"].get<std::int64_t>();
      c.axes_given = !j["axes"].is_null();
      if (c.axes_given) c.axes = j["axes"].get<std::vector<int>>();
      c.ddof = j["ddof"];
      if (c.op == "histogram") {
        c.bins = j["bins"];
        c.range_given = !j["range"].is_null();
        if (c.range_given) {
          c.range_lo = j["range"][0];
          c.range_hi = j["range"][1];
        }
        c.error = j["error"];
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

  static ReduceOptions options_for(const Case& c) {
    ReduceOptions o;
    o.op = parse_reduce_op(c.op);
    o.axes = c.axes;
    o.axes_given = c.axes_given;
    o.ddof = c.ddof;
    o.bins = c.bins;
    o.range_given = c.range_given;
    o.range_lo = c.range_lo;
    o.range_hi = c.range_hi;
    o.pool.backend = Backend::Serial;
    return o;
  }

  // Runs the case; empty when the result (or the refusal) matches numpy's, else what differs.
  static std::string check(const Case& c, const ReduceOptions& o) {
    const Source src = open_npy(dir_->file(c.input));
    if (!c.error) return compare(c, reduce(src, o));
    try {
      reduce(src, o);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::InvalidArgument) return "";
      return std::string("error of another kind: ") + e.what();
    }
    return "numpy refuses this case, reduce() returned a result";
  }

  // Empty when `got` matches numpy's answer, else what differs.
  static std::string compare(const Case& c, const ReduceResult& got) {
    const std::byte* want = expected_->data() + c.offset;
    std::ostringstream why;
    if (got.dtype != c.dtype.native()) {
      why << "dtype " << got.dtype.name() << " vs numpy " << c.dtype.name();
      return why.str();
    }
    if (got.shape != c.shape) {
      why << "shape " << format_shape(got.shape) << " vs numpy " << format_shape(c.shape);
      return why.str();
    }
    const auto n = static_cast<std::size_t>(got.size());
    if (c.tolerance < 0) {
      // Exact: integers, and min/max (NaN-aware for floats).
      const std::size_t item = got.dtype.itemsize();
      for (std::size_t i = 0; i < n; ++i) {
        const std::byte* a = got.data.data() + i * item;
        const std::byte* b = want + i * item;
        if (std::memcmp(a, b, item) == 0) continue;
        if (got.dtype.kind() == TypeKind::Float) {
          double x, y;
          if (item == 2) {
            Float16 hx, hy;
            std::memcpy(&hx, a, 2);
            std::memcpy(&hy, b, 2);
            x = hx.value();
            y = hy.value();
          } else if (item == 4) {
            float fx, fy;
            std::memcpy(&fx, a, 4);
            std::memcpy(&fy, b, 4);
            x = fx;
            y = fy;
          } else {
            std::memcpy(&x, a, 8);
            std::memcpy(&y, b, 8);
          }
          if (std::isnan(x) && std::isnan(y)) continue;
        }
        why << "element " << i << " differs";
        return why.str();
      }
      return "";
    }
    const std::byte* tol = expected_->data() + c.tolerance;
    for (std::size_t i = 0; i < n; ++i) {
      double x, y, t;
      std::memcpy(&x, got.data.data() + i * 8, 8);
      std::memcpy(&y, want + i * 8, 8);
      std::memcpy(&t, tol + i * 8, 8);
      if (std::isnan(x) && std::isnan(y)) continue;
      if (x == y) continue;
      if (std::isfinite(x) && std::isfinite(y) && std::fabs(x - y) <= t) continue;
      why.precision(17);
      why << "element " << i << ": " << x << " vs numpy " << y << " (tolerance " << t << ")";
      return why.str();
    }
    return "";
  }

  static std::string describe(const Case& c) {
    std::string s = c.input + " op=" + c.op + " ddof=" + std::to_string(c.ddof);
    if (c.op == "histogram") {
      s += " bins=" + std::to_string(c.bins);
      if (c.range_given)
        s += " range=" + std::to_string(c.range_lo) + "," + std::to_string(c.range_hi);
    }
    s += " axes=";
    if (!c.axes_given) return s + "default";
    for (int a : c.axes) s += std::to_string(a) + ",";
    return s;
  }

  static inline const test::FixtureDir* dir_ = nullptr;
  static inline std::vector<Case> cases_;
  static inline std::unique_ptr<MappedFile> expected_;
};

TEST_F(ReduceNumpy, EveryOpDtypeOrderAndAxesMatchesNumpy) {
  ASSERT_GT(cases_.size(), 1000u);
  int failures = 0;
  for (const Case& c : cases_) {
    const std::string why = check(c, options_for(c));
    if (!why.empty() && ++failures <= 20) ADD_FAILURE() << describe(c) << ": " << why;
  }
  EXPECT_EQ(failures, 0);
}

TEST_F(ReduceNumpy, TinyTasksSplitIntoBlocksAndPiecesStillMatchNumpy) {
  // 64-byte tasks force many blocks and pieces of the reduced axes, so the merge of partials
  // in the parent is exercised on every geometry.
  int failures = 0;
  for (const Case& c : cases_) {
    // float16 inputs reduce as float64 ones (widened first), whose blocks and pieces the
    // float64 cases cover already; their tiny tasks would only repeat them, slowly.
    if (c.float16_input) continue;
    ReduceOptions o = options_for(c);
    o.task_bytes = 64;
    const std::string why = check(c, o);
    if (!why.empty() && ++failures <= 20) ADD_FAILURE() << describe(c) << ": " << why;
  }
  EXPECT_EQ(failures, 0);
}

TEST_F(ReduceNumpy, ResultsAreBitwiseIdenticalForEveryBackendJobsAndMaxNbytes) {
  struct Setup {
    Backend backend;
    int n_jobs;
    std::uint64_t max_nbytes;
  };
  const Setup setups[] = {{Backend::Thread, 2, kDefaultMaxNbytes},
                          {Backend::Thread, 3, kDefaultMaxNbytes},
                          {Backend::Process, 2, 0},
                          {Backend::Process, 3, kDefaultMaxNbytes}};
  int checked = 0;
  // A spread of about 300 cases across the arrays and ops.
  const std::size_t step = cases_.size() / 300 | 1;
  for (std::size_t i = 0; i < cases_.size(); i += step) {
    const Case& c = cases_[i];
    if (c.error) continue;
    const Source src = open_npy(dir_->file(c.input));
    ReduceOptions o = options_for(c);
    o.task_bytes = 96;
    const ReduceResult ref = reduce(src, o);
    for (const Setup& s : setups) {
      o.pool.backend = s.backend;
      o.pool.n_jobs = s.n_jobs;
      o.pool.max_nbytes = s.max_nbytes;
      const ReduceResult got = reduce(src, o);
      ASSERT_EQ(got.data, ref.data)
          << describe(c) << " backend " << to_string(s.backend) << " n_jobs " << s.n_jobs;
    }
    ++checked;
  }
  EXPECT_GE(checked, 280);
}

TEST_F(ReduceNumpy, HistogramsCoverEveryDtypeAndRefusals) {
  // The histogram cases exist for every dtype, with and without a range, and some are refused.
  std::set<std::string> inputs_with_range, inputs_without;
  int refused = 0, histograms = 0;
  for (const Case& c : cases_) {
    if (c.op != "histogram") continue;
    ++histograms;
    refused += c.error;
    (c.range_given ? inputs_with_range : inputs_without).insert(c.input);
  }
  EXPECT_GT(histograms, 1000);
  EXPECT_GT(refused, 10);
  EXPECT_GT(inputs_with_range.size(), 100u);
  EXPECT_GT(inputs_without.size(), 100u);
}

TEST_F(ReduceNumpy, HistogramsAreBitwiseIdenticalForEveryBackendAndJobs) {
  int checked = 0;
  for (std::size_t i = 0; i < cases_.size(); i += 7) {
    const Case& c = cases_[i];
    if (c.op != "histogram" || c.error) continue;
    const Source src = open_npy(dir_->file(c.input));
    ReduceOptions o = options_for(c);
    o.task_bytes = 128;
    const ReduceResult ref = reduce(src, o);
    o.pool.backend = Backend::Process;
    o.pool.n_jobs = 2;
    o.pool.max_nbytes = 0;
    ASSERT_EQ(reduce(src, o).data, ref.data) << describe(c);
    ++checked;
  }
  EXPECT_GE(checked, 100);
}

TEST_F(ReduceNumpy, LargeSmallIntegerHistogramsMatchNumpy) {
  // Enough elements for the table of bins over all 2^8 / 2^16 values and for sub-histograms;
  // values on the edges of ranges whose bins do not divide them.
  test::TempDir dir;
  test::run_python_code(
      "import numpy as np, sys\n"
      "d = sys.argv[1]\n"
      "rng = np.random.default_rng(11)\n"
      "cases = [('u1', 7, (10.0, 80.0)), ('u1', 256, None), ('i1', 3, (-100.5, 99.25)),\n"
      "         ('u2', 7, (1000.0, 1049.0)), ('u2', 255, (0.0, 65280.0)), ('u2', 5, None),\n"
      "         ('i2', 7, (-30000.0, 30001.0)), ('?', 3, (0.0, 1.0))]\n"
      "for k, (code, bins, r) in enumerate(cases):\n"
      "    dt = np.dtype(code)\n"
      "    if dt.kind == 'b':\n"
      "        a = rng.integers(0, 2, (4, 300, 200)).astype(bool)\n"
      "    else:\n"
      "        info = np.iinfo(dt)\n"
      "        a = rng.integers(info.min, info.max, (4, 300, 200), endpoint=True, dtype=dt)\n"
      "        a[:, ::7, :] = rng.integers(1000 if code == 'u2' else 0, 1050 if code == 'u2'"
      " else 90, (4, 43, 200)).astype(dt)\n"
      "    rr = r if r is not None else (a.min(), a.max())\n"
      "    e = np.stack([np.histogram(s, bins=bins, range=rr)[0] for s in a]).astype(np.int64)\n"
      "    np.save(f'{d}/in{k}.npy', a)\n"
      "    np.save(f'{d}/out{k}.npy', e)\n",
      {dir.path()});
  struct Params {
    std::int64_t bins;
    bool range_given;
    double lo, hi;
  };
  const Params params[] = {
      {7, true, 10, 80},     {256, false, 0, 0}, {3, true, -100.5, 99.25}, {7, true, 1000, 1049},
      {255, true, 0, 65280}, {5, false, 0, 0},   {7, true, -30000, 30001}, {3, true, 0, 1}};
  for (int k = 0; k < 8; ++k) {
    const Params& p = params[k];
    const Source src = open_npy(dir.file("in" + std::to_string(k) + ".npy"));
    const Source want = open_npy(dir.file("out" + std::to_string(k) + ".npy"));
    ReduceOptions o;
    o.op = ReduceOp::Histogram;
    o.bins = p.bins;
    o.range_given = p.range_given;
    o.range_lo = p.lo;
    o.range_hi = p.hi;
    o.pool.n_jobs = 2;
    const ReduceResult got = reduce(src, o);
    ASSERT_EQ(got.shape, (Shape{4, p.bins})) << k;
    EXPECT_EQ(std::memcmp(got.data.data(), want.data(), got.data.size()), 0) << "case " << k;
  }
}

TEST_F(ReduceNumpy, PerImageMeanOfU8CubeIsBitwiseNumpys) {
  test::TempDir dir;
  test::run_python_code(
      "import numpy as np, sys\n"
      "rng = np.random.default_rng(7)\n"
      "a = rng.integers(0, 256, (48, 256, 320), dtype=np.uint8)\n"
      "np.save(sys.argv[1] + '/cube.npy', a)\n"
      "np.save(sys.argv[1] + '/mean.npy', a.mean(axis=(1, 2)))\n",
      {dir.path()});
  const Source cube = open_npy(dir.file("cube.npy"));
  const Source want = open_npy(dir.file("mean.npy"));
  ReduceOptions o;
  o.op = ReduceOp::Mean;
  o.pool.n_jobs = 2;
  o.task_bytes = 1 << 18;  // several slices per task, several tasks
  const ReduceResult got = reduce(cube, o);
  ASSERT_EQ(got.shape, Shape{48});
  ASSERT_EQ(got.data.size(), 48u * 8);
  EXPECT_EQ(std::memcmp(got.data.data(), want.data(), got.data.size()), 0);
}

// Float sums, means, variances and norms of cubes far from zero (1000 + noise) in every layout
// (float32 and float64, both byte orders, C and Fortran order, axes that make strategy A with
// long and short runs and strategy B) stay within kMaxUlps of the answer numpy computes in
// extended precision (tests/fixtures/reduce_accuracy.py).
constexpr double kMaxUlps = 8;

// |got - want| in units of the last place of want.
double ulps_between(double got, double want) {
  if (got == want) return 0;
  const double w = std::fabs(want);
  return std::fabs(got - want) / (std::nextafter(w, INFINITY) - w);
}

class ReduceAccuracy : public ::testing::Test {
 protected:
  struct Case {
    std::string input, op;
    std::vector<int> axes;
    int ddof = 0;
    Shape shape;
    std::size_t offset = 0;
  };

  static void SetUpTestSuite() {
    dir_ = &test::shared_fixture("reduce_accuracy.py");
    for (const auto& j : nlohmann::json::parse(test::read_file(dir_->file("accuracy.json")))) {
      cases_.push_back(Case{j["input"], j["op"], j["axes"].get<std::vector<int>>(), j["ddof"],
                            j["shape"].get<Shape>(), j["offset"]});
    }
    expected_ = std::make_unique<MappedFile>(
        MappedFile::open(dir_->file("accuracy.bin"), MapMode::ReadOnly));
  }
  static void TearDownTestSuite() {
    cases_.clear();
    expected_.reset();
    dir_ = nullptr;
  }

  // Checks every case with `base`'s pool and task size; the worst distance seen is reported.
  static void expect_every_case_within_bound(const ReduceOptions& base) {
    ASSERT_GE(cases_.size(), 400u);
    double worst = 0;
    std::string worst_case;
    int failures = 0;
    for (const Case& c : cases_) {
      ReduceOptions o = base;
      o.op = parse_reduce_op(c.op);
      o.axes = c.axes;
      o.axes_given = true;
      o.ddof = c.ddof;
      const ReduceResult got = reduce(open_npy(dir_->file(c.input)), o);
      ASSERT_EQ(got.shape, c.shape) << c.input << " " << c.op;
      const double* want = reinterpret_cast<const double*>(expected_->data() + c.offset);
      double case_worst = 0;
      for (std::int64_t i = 0; i < got.size(); ++i) {
        case_worst = std::max(case_worst, ulps_between(got.as<double>()[i], want[i]));
      }
      std::string axes;
      for (int a : c.axes) axes += std::to_string(a) + ",";
      const std::string what =
          c.input + " op=" + c.op + " ddof=" + std::to_string(c.ddof) + " axes=" + axes;
      if (case_worst > worst) {
        worst = case_worst;
        worst_case = what;
      }
      if (case_worst > kMaxUlps && ++failures <= 20) {
        ADD_FAILURE() << what << ": " << case_worst
                      << " ulps from numpy's extended-precision answer";
      }
    }
    EXPECT_EQ(failures, 0) << "worst: " << worst << " ulps (" << worst_case << ")";
    std::printf("worst distance: %.1f ulps (%s)\n", worst, worst_case.c_str());
  }

  static inline const test::FixtureDir* dir_ = nullptr;
  static inline std::vector<Case> cases_;
  static inline std::unique_ptr<MappedFile> expected_;
};

TEST_F(ReduceAccuracy, FloatReductionsOfEveryLayoutAreWithinEightUlps) {
  ReduceOptions o;
  o.pool.backend = Backend::Serial;
  expect_every_case_within_bound(o);
}

TEST_F(ReduceAccuracy, FloatReductionsSplitIntoPiecesAcrossWorkersAreWithinEightUlps) {
  // 64 KiB tasks cut each image into pieces whose partials the parent merges.
  ReduceOptions o;
  o.pool.backend = Backend::Thread;
  o.pool.n_jobs = 2;
  o.task_bytes = 1 << 16;
  expect_every_case_within_bound(o);
}

TEST(ReduceResultAs, RefusesAnotherElementTypeNamingBoth) {
  test::TempDir dir;
  const std::vector<float> values = {1.0f, 2.0f, 4.0f};
  test::write_file(dir.file("v.f32"),
                   std::string(reinterpret_cast<const char*>(values.data()), sizeof(float) * 3));
  const Source src = open_raw(RawSpec{dir.file("v.f32"), DType(TypeId::F32), {3}});
  ReduceOptions o;
  o.op = ReduceOp::Count;
  o.pool.backend = Backend::Serial;
  const ReduceResult r = reduce(src, o);
  ASSERT_EQ(r.dtype, DType(TypeId::I64));
  EXPECT_EQ(r.as<std::int64_t>()[0], 3);
  // A float view of an 8-byte result: before the check, element 1 read past the buffer.
  for (auto wrong : {+[](const ReduceResult& x) { (void)x.as<float>(); },
                     +[](const ReduceResult& x) { (void)x.as<double>(); },
                     +[](const ReduceResult& x) { (void)x.as<std::uint64_t>(); }}) {
    try {
      wrong(r);
      ADD_FAILURE() << "as<T>() of the wrong T returned";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      const std::string what = e.what();
      EXPECT_NE(what.find("i64"), std::string::npos) << what;
      EXPECT_NE(what.find("std::int64_t"), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace mmc
