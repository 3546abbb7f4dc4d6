// reduce_each(): several ops in one pass give each op's bits as the op alone, for dense and
// chunked sources, every byte order and layout, task size and backend, and on a warm pool; a
// histogram carries numpy's edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "mmc/reduce.hpp"
#include "reduce_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::axis_sets;
using test::TempDir;

const std::vector<ReduceOp> kEachOp = {
    ReduceOp::Sum,    ReduceOp::Mean,   ReduceOp::Min,    ReduceOp::Max,     ReduceOp::Var,
    ReduceOp::Std,    ReduceOp::Count,  ReduceOp::NanSum, ReduceOp::NanMean, ReduceOp::NanMin,
    ReduceOp::NanMax, ReduceOp::NanVar, ReduceOp::NanStd, ReduceOp::Any,     ReduceOp::All,
    ReduceOp::Norm,   ReduceOp::ArgMin, ReduceOp::ArgMax, ReduceOp::Histogram};

std::string each_what(const std::string& source, const std::vector<int>& axes, std::int64_t tb,
                     ReduceOp op) {
  std::string s = source + ", " + to_string(op) + " axes";
  for (int a : axes) s += " " + std::to_string(a);
  return s + ", task_bytes " + std::to_string(tb);
}

void expect_same_result(const ReduceResult& got, const ReduceResult& want, const std::string& what) {
  ASSERT_EQ(got.dtype, want.dtype) << what;
  ASSERT_EQ(got.shape, want.shape) << what;
  // Byte vectors compared whole (an empty one has no data pointer to hand memcmp).
  EXPECT_TRUE(got.data == want.data) << what;
  EXPECT_TRUE(got.edges == want.edges) << what;
}

// Every op of `ops` in one reduce_each against each op alone (serial), over several axes and
// task sizes; the pass runs on `backend`. Returns the comparisons made.
int compare_each_with_alone(const AnyArray& array, const std::string& name,
                            const std::vector<ReduceOp>& ops, Backend backend, bool range) {
  int compared = 0;
  for (const std::vector<int>& axes : axis_sets(array.meta().ndim())) {
    for (std::int64_t tb : {std::int64_t{0}, std::int64_t{96}, std::int64_t{1000}}) {
      ReduceOptions o;
      o.ops = ops;
      o.axes = axes;
      o.axes_given = !axes.empty();
      o.task_bytes = tb;
      o.bins = 7;
      o.range_given = range;
      o.range_lo = -40;
      o.range_hi = 300;
      o.pool.n_jobs = 2;
      o.pool.backend = backend;
      const std::vector<ReduceResult> each = reduce_each(array, o);
      EXPECT_EQ(each.size(), ops.size());
      if (each.size() != ops.size()) return compared;
      for (std::size_t k = 0; k < ops.size(); ++k) {
        ReduceOptions alone = o;
        alone.ops.clear();
        alone.op = ops[k];
        alone.pool.backend = Backend::Serial;
        const std::string what = each_what(name, axes, tb, ops[k]);
        expect_same_result(each[k], reduce(array, alone), what);
        if (::testing::Test::HasFailure()) return compared;
        ++compared;
      }
    }
  }
  return compared;
}

// Writes `values` as a raw file and opens it with the layout given.
// `as`: the dtype's type when not T's (bool data stored as bytes).
template <class T>
AnyArray each_raw(const TempDir& dir, const std::string& name, const std::vector<T>& values,
                  Shape shape, Order order, bool swapped, TypeId as = type_id_of<T>()) {
  std::vector<T> stored = values;
  if (swapped) {
    for (T& v : stored) {
      auto* b = reinterpret_cast<unsigned char*>(&v);
      std::reverse(b, b + sizeof(T));
    }
  }
  const std::string path = dir.file(name);
  test::write_file(path, std::string(reinterpret_cast<const char*>(stored.data()),
                                     stored.size() * sizeof(T)));
  RawSpec spec;
  spec.path = path;
  spec.dtype = DType(as, swapped ? (native_byte_order() == ByteOrder::Little
                                                     ? ByteOrder::Big
                                                     : ByteOrder::Little)
                                              : native_byte_order());
  spec.shape = std::move(shape);
  spec.order = order;
  return AnyArray(open_raw(spec));
}

template <class T>
std::vector<T> each_values(std::size_t n, unsigned seed, bool with_nan) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(-50, 320);
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = static_cast<T>(dist(gen));
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (with_nan) {
      v[n / 3] = std::numeric_limits<T>::quiet_NaN();
      v[n / 2 + 1] = std::numeric_limits<T>::quiet_NaN();
    }
  }
  return v;
}

TEST(ReduceEach, EveryOpInOnePassIsBitwiseTheOpAloneOnDenseArrays) {
  TempDir dir;
  int compared = 0;
  const auto u8 = each_raw<std::uint8_t>(dir, "u8", each_values<std::uint8_t>(20 * 12 * 10, 1, false),
                                          {20, 12, 10}, Order::C, false);
  compared += compare_each_with_alone(u8, "u8 C", kEachOp, Backend::Process, true);
  const auto i16 = each_raw<std::int16_t>(dir, "i16", each_values<std::int16_t>(9 * 8 * 7 * 6, 2, false),
                                           {9, 8, 7, 6}, Order::F, true);
  compared += compare_each_with_alone(i16, "i16 swapped F", kEachOp, Backend::Thread, true);
  const auto f32 = each_raw<float>(dir, "f32", each_values<float>(33 * 17, 3, true), {33, 17},
                                    Order::C, false);
  compared += compare_each_with_alone(f32, "f32 NaN C", kEachOp, Backend::Thread, true);
  const auto f64 = each_raw<double>(dir, "f64", each_values<double>(6 * 50 * 40, 4, false),
                                     {6, 50, 40}, Order::F, true);
  compared += compare_each_with_alone(f64, "f64 swapped F", kEachOp, Backend::Serial, true);
  std::vector<std::uint8_t> truth = each_values<std::uint8_t>(5 * 6 * 7, 5, false);
  for (std::uint8_t& v : truth) v = v > 100 ? 1 : 0;
  const auto b = each_raw<std::uint8_t>(dir, "b", truth, {5, 6, 7}, Order::C, false, TypeId::Bool);
  compared += compare_each_with_alone(b, "bool", kEachOp, Backend::Thread, true);
  EXPECT_GT(compared, 1000);
}

TEST(ReduceEach, AHistogramWithoutARangeRunsItsRangePassFirst) {
  // No NaN: the histogram's range is the whole array's min and max, found by a pass of its own.
  TempDir dir;
  const auto f32 = each_raw<float>(dir, "f32", each_values<float>(20 * 12 * 10, 6, false),
                                    {20, 12, 10}, Order::C, false);
  const std::vector<ReduceOp> ops = {ReduceOp::Mean, ReduceOp::Histogram, ReduceOp::Max,
                                     ReduceOp::ArgMax};
  EXPECT_GT(compare_each_with_alone(f32, "f32 no range", ops, Backend::Process, false), 50);
  const auto u16 = each_raw<std::uint16_t>(dir, "u16", each_values<std::uint16_t>(15 * 9 * 11, 7, false),
                                            {15, 9, 11}, Order::F, true);
  EXPECT_GT(compare_each_with_alone(u16, "u16 swapped F no range", ops, Backend::Thread, false), 50);
}

TEST(ReduceEach, ChunkedArraysDecodeOnceAndGiveTheDenseBits) {
  TempDir dir;
  struct Case {
    std::string kind, dtype, shape, order, chunks, compressor;
  };
  const std::vector<Case> cases = {
      {"zarr", "<f4", "20,12,10", "C", "7,12,10", "zlib"},
      {"zarr", ">f8", "9,8,7,6", "F", "2,3,7,4", "blosc"},
      {"hdf5", "<u2", "15,9,11", "C", "15,9,1", "none"},
  };
  int compared = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string chunked = c.kind == "hdf5" ? dir.file("c" + std::to_string(i) + ".h5") + ":/d"
                                                 : dir.file("c" + std::to_string(i) + ".zarr");
    const std::string dense = dir.file("c" + std::to_string(i) + ".npy");
    test::run_python("convert_check.py", {"make", c.kind, chunked, dir.file("e1.npy"), c.dtype,
                                          c.shape, c.order, c.chunks, c.compressor});
    test::run_python("convert_check.py",
                     {"make", "npy", dense, dir.file("e2.npy"), c.dtype, c.shape, c.order});
    const AnyArray a = open_array(chunked);
    const AnyArray d = open_array(dense);
    ASSERT_NE(a.chunked(), nullptr);
    compared += compare_each_with_alone(a, chunked, kEachOp, i == 0 ? Backend::Process : Backend::Thread,
                                        true);
    // And the chunked pass equals the dense file's single ops (the dense file is the truth).
    ReduceOptions o;
    o.ops = {ReduceOp::Mean, ReduceOp::Std, ReduceOp::NanMin, ReduceOp::ArgMin};
    o.pool.backend = Backend::Thread;
    o.pool.n_jobs = 2;
    const std::vector<ReduceResult> each = reduce_each(a, o);
    for (std::size_t k = 0; k < o.ops.size(); ++k) {
      ReduceOptions alone;
      alone.op = o.ops[k];
      alone.pool.backend = Backend::Serial;
      expect_same_result(each[k], reduce(d, alone), chunked + " vs .npy " + to_string(o.ops[k]));
    }
  }
  EXPECT_GT(compared, 500);
}

TEST(ReduceEach, RunsOnAWarmPoolWithTheSameBits) {
  TempDir dir;
  const auto f64 = each_raw<double>(dir, "f64", each_values<double>(30 * 20 * 16, 8, true),
                                     {30, 20, 16}, Order::C, false);
  const Source& source = *f64.dense();
  PoolOptions po;
  po.n_jobs = 2;
  for (Backend backend : {Backend::Process, Backend::Thread}) {
    po.backend = backend;
    Pool pool(po);
    for (std::int64_t tb : {std::int64_t{0}, std::int64_t{512}}) {
      ReduceOptions o;
      o.ops = {ReduceOp::NanMean, ReduceOp::NanStd, ReduceOp::NanMin, ReduceOp::NanMax,
               ReduceOp::Count, ReduceOp::ArgMax, ReduceOp::Histogram};
      o.range_given = true;
      o.range_lo = 0;
      o.range_hi = 100;
      o.task_bytes = tb;
      const std::vector<ReduceResult> each = reduce_each(f64, o, pool);
      ASSERT_EQ(each.size(), o.ops.size());
      for (std::size_t k = 0; k < o.ops.size(); ++k) {
        ReduceOptions alone = o;
        alone.ops.clear();
        alone.op = o.ops[k];
        alone.pool.backend = Backend::Serial;
        expect_same_result(each[k], reduce(source, alone),
                    std::string(to_string(backend)) + " pool " + to_string(o.ops[k]));
      }
    }
  }
}

TEST(ReduceEach, RefusesARepeatedOpAndReduceRefusesSeveral) {
  TempDir dir;
  const auto u8 = each_raw<std::uint8_t>(dir, "u8", each_values<std::uint8_t>(64, 9, false),
                                          {4, 16}, Order::C, false);
  ReduceOptions o;
  o.ops = {ReduceOp::Mean, ReduceOp::Max, ReduceOp::Mean};
  test::expect_error([&] { reduce_each(u8, o); }, ErrorCode::InvalidArgument,
                     {"mean", "listed twice"});
  o.ops = {ReduceOp::Mean, ReduceOp::Max};
  test::expect_error([&] { reduce(u8, o); }, ErrorCode::InvalidArgument, {"2 ops", "reduce_each"});
  // One op in the list is reduce()'s too, and options.op is then not used.
  o.ops = {ReduceOp::Max};
  o.op = ReduceOp::Sum;
  EXPECT_EQ(reduce(u8, o).dtype, DType(TypeId::U8));
  EXPECT_EQ(parse_reduce_ops("mean,std,min,max"),
            (std::vector<ReduceOp>{ReduceOp::Mean, ReduceOp::Std, ReduceOp::Min, ReduceOp::Max}));
  test::expect_error([] { parse_reduce_ops("mean,,max"); }, ErrorCode::InvalidArgument,
                     {"empty name"});
  test::expect_error([] { parse_reduce_ops("max,max"); }, ErrorCode::InvalidArgument,
                     {"listed twice"});
  test::expect_error([] { parse_reduce_ops("mean,median2"); }, ErrorCode::InvalidArgument,
                     {"median2"});
}

TEST(ReduceEach, EmptyAxesGiveEachOpsIdentityOrItsError) {
  TempDir dir;
  const auto f32 = each_raw<float>(dir, "f32", std::vector<float>{}, {3, 0}, Order::C, false);
  ReduceOptions o;
  o.ops = {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Count, ReduceOp::Histogram};
  o.axes = {1};
  o.axes_given = true;
  o.pool.backend = Backend::Serial;
  const std::vector<ReduceResult> each = reduce_each(f32, o);
  ASSERT_EQ(each.size(), 4u);
  EXPECT_EQ(each[0].as<double>()[0], 0.0);
  EXPECT_TRUE(std::isnan(each[1].as<double>()[0]));
  EXPECT_EQ(each[2].as<std::int64_t>()[2], 0);
  EXPECT_EQ(each[3].shape, (Shape{3, 10}));
  // np.histogram of nothing: bins over [0, 1].
  ASSERT_EQ(each[3].edges.size(), 11 * sizeof(float));
  EXPECT_EQ(reinterpret_cast<const float*>(each[3].edges.data())[10], 1.0f);
  o.ops.push_back(ReduceOp::Max);
  test::expect_error([&] { reduce_each(f32, o); }, ErrorCode::InvalidArgument,
                     {"max of an empty axis"});
}

}  // namespace
}  // namespace mmc
