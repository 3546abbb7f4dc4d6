// Nodata values and masks (ReduceOptions::nodata, ::mask) against numpy's answers over each
// slice's kept elements (tests/fixtures/masked_cases.py): every op family, integer, bool and
// float dtypes in both byte orders, C and F order, nodata at the dtype's extremes, -0.0 equal
// to a nodata 0, masks of one image, of a column broadcast along the last axis and of the whole
// shape, slices with nothing left (a whole image of nodata, a whole masked image), views with
// negative steps; the same bits for every backend, a warm Pool, zarr and HDF5 chunked copies,
// and each op alone.
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
#include "mmc/select.hpp"
#include "support/test_support.hpp"

namespace mmc::masked_test {
namespace {

struct Expected {
  std::string op;
  std::string dtype;  // numpy's str, e.g. "<f8"
  Shape shape;
  std::size_t offset = 0;
};

struct Case {
  std::string input, zarr, h5, mask, nodata, select;
  bool axes_given = false;
  std::vector<int> axes;
  std::vector<double> q;
  std::int64_t bins = 10;
  double lo = 0, hi = 1;
  std::vector<Expected> results;

  std::string name() const {
    std::string n = input + " nodata=" + (nodata.empty() ? "-" : nodata) +
                    " mask=" + (mask.empty() ? "-" : mask);
    if (!select.empty()) n += " select=" + select;
    n += " axes=";
    if (!axes_given) return n + "default";
    for (int a : axes) n += std::to_string(a) + ",";
    return n;
  }
};

class Masked : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = &test::shared_fixture("masked_cases.py");
    for (const auto& j : nlohmann::json::parse(test::read_file(dir_->file("cases.json")))) {
      Case c;
      c.input = j["input"];
      if (!j["zarr"].is_null()) c.zarr = j["zarr"];
      if (!j["h5"].is_null()) c.h5 = j["h5"];
      if (!j["mask"].is_null()) c.mask = j["mask"];
      if (!j["nodata"].is_null()) c.nodata = j["nodata"];
      if (!j["select"].is_null()) c.select = j["select"];
      c.axes_given = !j["axes"].is_null();
      if (c.axes_given) c.axes = j["axes"].get<std::vector<int>>();
      c.q = j["q"].get<std::vector<double>>();
      c.bins = j["bins"];
      c.lo = j["range"][0];
      c.hi = j["range"][1];
      for (const auto& [op, r] : j["results"].items()) {
        c.results.push_back({op, r["dtype"], r["shape"].get<Shape>(), r["offset"]});
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

  // The case's array (a view when it selects), opened from `file` (default: its .npy).
  static AnyArray open_case(const Case& c, const std::string& file = "") {
    AnyArray array = open_array(file.empty() ? dir_->file(c.input) : file);
    if (!c.select.empty()) return select(array, parse_selection(c.select));
    return array;
  }

  static ReduceOptions options_for(const Case& c) {
    ReduceOptions o;
    for (const Expected& e : c.results) o.ops.push_back(parse_reduce_op(e.op));
    o.axes = c.axes;
    o.axes_given = c.axes_given;
    o.q = c.q;
    o.bins = c.bins;
    o.range_given = true;
    o.range_lo = c.lo;
    o.range_hi = c.hi;
    if (!c.nodata.empty()) o.nodata = parse_nodata(c.nodata);
    if (!c.mask.empty()) o.mask = std::make_shared<const Source>(open_npy(dir_->file(c.mask)));
    return o;
  }

  // Each result against numpy's: integers, bools, min/max and the order statistics equal (or
  // both NaN), float sums and moments within a relative 1e-10 (numpy sums the float64 cast
  // pairwise, we sum compensated). Returns the values compared.
  static std::int64_t expect_numpy(const Case& c, const std::vector<ReduceResult>& got,
                                   const std::string& how) {
    std::int64_t compared = 0;
    EXPECT_EQ(got.size(), c.results.size());
    for (std::size_t k = 0; k < c.results.size() && k < got.size(); ++k) {
      const Expected& e = c.results[k];
      const std::string what = c.name() + " " + e.op + " (" + how + ")";
      const ReduceResult& r = got[k];
      EXPECT_EQ(r.shape, e.shape) << what;
      EXPECT_EQ(r.dtype.numpy_descr(), e.dtype) << what;
      if (r.shape != e.shape || r.dtype.numpy_descr() != e.dtype) continue;
      const std::byte* want = expected_->data() + e.offset;
      const bool close = e.dtype == "<f8" && e.op != "median" && e.op != "nanmedian" &&
                         e.op != "percentile" && e.op != "min" && e.op != "max";
      int shown = 0;
      for (std::int64_t i = 0; i < r.size(); ++i, ++compared) {
        bool same;
        std::string have_text, want_text;
        if (e.dtype == "<f8" || e.dtype == "<f4" || e.dtype == "<f2") {
          double h, w;
          if (e.dtype == "<f8") {
            std::memcpy(&h, r.data.data() + i * 8, 8);
            std::memcpy(&w, want + i * 8, 8);
          } else if (e.dtype == "<f2") {
            Float16 hh, wh;
            std::memcpy(&hh, r.data.data() + i * 2, 2);
            std::memcpy(&wh, want + i * 2, 2);
            h = hh.value();
            w = wh.value();
          } else {
            float hf, wf;
            std::memcpy(&hf, r.data.data() + i * 4, 4);
            std::memcpy(&wf, want + i * 4, 4);
            h = hf;
            w = wf;
          }
          same = h == w || (std::isnan(h) && std::isnan(w)) ||
                 (close && std::fabs(h - w) <= 1e-10 * std::fabs(w));
          have_text = std::to_string(h);
          want_text = std::to_string(w);
        } else {
          const std::size_t item = r.dtype.itemsize();
          same = std::memcmp(r.data.data() + static_cast<std::size_t>(i) * item,
                             want + static_cast<std::size_t>(i) * item, item) == 0;
          std::int64_t h = 0, w = 0;
          std::memcpy(&h, r.data.data() + static_cast<std::size_t>(i) * item,
                      std::min<std::size_t>(item, 8));
          std::memcpy(&w, want + static_cast<std::size_t>(i) * item,
                      std::min<std::size_t>(item, 8));
          have_text = std::to_string(h);
          want_text = std::to_string(w);
        }
        if (!same && shown++ < 3) {
          ADD_FAILURE() << what << ": element " << i << " is " << have_text << ", numpy says "
                        << want_text;
        }
      }
    }
    return compared;
  }

  static void expect_same_bits(const Case& c, const std::vector<ReduceResult>& a,
                               const std::vector<ReduceResult>& b, const std::string& how) {
    ASSERT_EQ(a.size(), b.size()) << c.name();
    for (std::size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(a[k].data == b[k].data) << c.name() << " " << c.results[k].op << ": " << how;
    }
  }

  static const test::FixtureDir* dir_;
  static std::vector<Case> cases_;
  static std::unique_ptr<MappedFile> expected_;
};

const test::FixtureDir* Masked::dir_ = nullptr;
std::vector<Case> Masked::cases_;
std::unique_ptr<MappedFile> Masked::expected_;

TEST_F(Masked, EveryCaseMatchesNumpySeriallyAndOnThreadsWithSmallTasks) {
  ASSERT_GE(cases_.size(), 60u);
  std::int64_t compared = 0;
  for (const Case& c : cases_) {
    const AnyArray array = open_case(c);
    ReduceOptions o = options_for(c);
    o.pool.backend = Backend::Serial;
    const std::vector<ReduceResult> serial = reduce_each(array, o);
    compared += expect_numpy(c, serial, "serial");
    o.pool.backend = Backend::Thread;
    o.pool.n_jobs = 3;
    expect_same_bits(c, serial, reduce_each(array, o), "threads");
    // Small tasks cut slices into pieces, whose partials merge.
    o.task_bytes = array.meta().size() < 10000 ? 200 : 1 << 14;
    compared += expect_numpy(c, reduce_each(array, o), "threads, small tasks");
  }
  EXPECT_GT(compared, 30000);
}

TEST_F(Masked, ProcessesAndAWarmPoolGiveTheSerialBits) {
  ParallelOptions parallel;
  parallel.backend = Backend::Process;
  parallel.n_jobs = 2;
  Pool pool(parallel);
  std::size_t index = 0;
  for (const Case& c : cases_) {
    if (index++ % 2 == 1) continue;  // each call forks: every other case
    const AnyArray array = open_case(c);
    ReduceOptions o = options_for(c);
    o.task_bytes = 512;
    o.pool.backend = Backend::Serial;
    const std::vector<ReduceResult> serial = reduce_each(array, o);
    o.pool.backend = Backend::Process;
    o.pool.n_jobs = 2;
    expect_same_bits(c, serial, reduce_each(array, o), "processes");
    // The warm pool's workers open the mask from the descriptor each batch carries.
    expect_same_bits(c, serial, reduce_each(array, o, pool), "warm pool");
    EXPECT_EQ(reduce_each(array, o, pool).front().stats.tasks_in_caller, 0u) << c.name();
  }
}

TEST_F(Masked, ChunkedZarrAndHdf5CopiesGiveTheDenseBits) {
  int chunked = 0;
  for (const Case& c : cases_) {
    for (const std::string& store : {c.zarr, c.h5}) {
      if (store.empty()) continue;
      const std::string path =
          dir_->file(store) + (store.ends_with(".h5") ? std::string(":/data") : std::string());
      const AnyArray array = open_case(c, path);
      ASSERT_NE(array.chunked(), nullptr) << path;
      ReduceOptions o = options_for(c);
      o.pool.n_jobs = 2;
      o.pool.backend = Backend::Thread;
      o.task_bytes = 300;
      const std::vector<ReduceResult> dense = reduce_each(open_case(c), o);
      expect_same_bits(c, dense, reduce_each(array, o), store);
      ++chunked;
    }
  }
  EXPECT_GE(chunked, 40);
}

TEST_F(Masked, EachOpAloneGivesTheBitsOfTheOpsTogether) {
  std::size_t index = 0;
  for (const Case& c : cases_) {
    if (index++ % 3 != 0) continue;
    const AnyArray array = open_case(c);
    const ReduceOptions all = options_for(c);
    const std::vector<ReduceResult> together = reduce_each(array, all);
    for (std::size_t k = 0; k < all.ops.size(); ++k) {
      ReduceOptions o = all;
      o.ops = {all.ops[k]};
      EXPECT_TRUE(reduce(array, o).data == together[k].data) << c.name() << " " << c.results[k].op;
    }
  }
}

TEST(MaskedOptions, BadNodataValuesAndMasksAreRefusedWithTheirReason) {
  test::TempDir dir;
  test::run_python_code(
      "import numpy as np, sys\n"
      "d = sys.argv[1]\n"
      "np.save(d + '/u8.npy', np.arange(24, dtype='u1').reshape(2, 3, 4))\n"
      "np.save(d + '/f4.npy', np.arange(24, dtype='f4').reshape(2, 3, 4))\n"
      "np.save(d + '/m_u8.npy', np.zeros((3, 4), 'u1'))\n"
      "np.save(d + '/m_bad.npy', np.zeros((3, 5), bool))\n"
      "np.save(d + '/m_big.npy', np.zeros((1, 2, 3, 4), bool))\n"
      "np.save(d + '/m_ok.npy', np.ones((3, 1), bool))\n",
      {dir.path()});
  const AnyArray u8 = open_array(dir.file("u8.npy"));
  const AnyArray f4 = open_array(dir.file("f4.npy"));
  auto refused = [](const AnyArray& array, const ReduceOptions& o, const std::string& words) {
    try {
      (void)reduce(array, o);
      ADD_FAILURE() << "not refused: " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  ReduceOptions o;
  o.nodata = std::int64_t{300};
  refused(u8, o, "nodata 300 is out of the range of u8");
  o.nodata = 1.5;
  refused(u8, o, "nodata 1.5 is not a value of u8");
  o.nodata = -1.0;
  refused(u8, o, "out of the range");
  o.nodata = std::numeric_limits<double>::infinity();
  refused(u8, o, "nodata inf is out of the range of u8");
  o.nodata = NoData{};
  o.mask = std::make_shared<const Source>(open_npy(dir.file("m_u8.npy")));
  refused(u8, o, "a mask is a bool array, this one is u8");
  o.mask = std::make_shared<const Source>(open_npy(dir.file("m_bad.npy")));
  refused(u8, o, "does not broadcast");
  o.mask = std::make_shared<const Source>(open_npy(dir.file("m_big.npy")));
  refused(u8, o, "more axes than the array");
  // A mask of every element: each image's mean is NaN, its count 0.
  o.mask = std::make_shared<const Source>(open_npy(dir.file("m_ok.npy")));
  o.ops = {ReduceOp::Mean, ReduceOp::Count, ReduceOp::Min};
  const std::vector<ReduceResult> r = reduce_each(u8, o);
  EXPECT_TRUE(std::isnan(r[0].as<double>()[0]));
  EXPECT_EQ(r[1].as<std::int64_t>()[1], 0);
  EXPECT_EQ(r[2].as<std::uint8_t>()[0], 0);
}

TEST(MaskedOptions, Float32NodataIsCastAsNumpyCastsIt) {
  test::TempDir dir;
  const std::string path = dir.file("f4.npy");
  test::run_python_code(
      "import numpy as np, sys\n"
      "m = np.finfo('f4').max\n"
      "np.save(sys.argv[1], np.array([[1, m, -m, np.inf, 0.1]], 'f4'))\n",
      {path});
  const AnyArray f4 = open_array(path);
  ReduceOptions o;
  o.op = ReduceOp::Count;
  // GDAL's nodata text rounds to float32's largest value; past half a spacing it is infinite;
  // 0.1 is float32's 0.1.
  for (const auto& [text, left] :
       std::vector<std::pair<std::string, std::int64_t>>{{"-3.4028235e+38", 4},
                                                         {"3.4028235e38", 4},
                                                         {"1e39", 4},
                                                         {"1e400", 4},
                                                         {"0.1", 4},
                                                         {"5", 5}}) {
    o.nodata = parse_nodata(text);
    EXPECT_EQ(reduce(f4, o).as<std::int64_t>()[0], left) << text;
  }
}

TEST(MaskedOptions, NodataTextParsesExactly) {
  EXPECT_EQ(std::get<std::int64_t>(parse_nodata("-9999")), -9999);
  EXPECT_EQ(std::get<std::uint64_t>(parse_nodata("18446744073709551615")),
            std::uint64_t{18446744073709551615u});
  EXPECT_EQ(std::get<std::int64_t>(parse_nodata("-9223372036854775808")),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(std::get<double>(parse_nodata("-3.5e38")), -3.5e38);
  EXPECT_TRUE(std::isinf(std::get<double>(parse_nodata("-inf"))));
  EXPECT_EQ(std::get<double>(parse_nodata("99999999999999999999999")), 1e23);  // past 64 bits
  EXPECT_EQ(std::get<std::int64_t>(parse_nodata("+5")), 5);
  EXPECT_TRUE(std::isinf(std::get<double>(parse_nodata("1e400"))));  // as Python's float()
  EXPECT_EQ(format_nodata(parse_nodata("-3.4028235e+38")), "-3.4028235e+38");
  for (const char* bad :
       {"", "nan", "abc", "1,2", " 1", "1 ", "0x10", "0x1p3", "+-1", "+", "1e-400", "2e-324"}) {
    EXPECT_THROW((void)parse_nodata(bad), Error) << bad;
  }
}

}  // namespace
}  // namespace mmc::masked_test
