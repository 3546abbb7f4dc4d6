// reduce(): options, edge cases and exactness that numpy's own answers cannot show.
#include "mmc/reduce.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mmc/error.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

template <class T>
Source raw_of(const test::TempDir& dir, const std::vector<T>& values, Shape shape,
              Order order = Order::C) {
  const std::string path = dir.file("a.raw");
  test::write_file(
      path, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
  RawSpec spec;
  spec.path = path;
  spec.dtype = DType(type_id_of<T>());
  spec.shape = std::move(shape);
  spec.order = order;
  return open_raw(spec);
}

ReduceOptions opts(ReduceOp op) {
  ReduceOptions o;
  o.op = op;
  o.pool.backend = Backend::Serial;
  return o;
}

TEST(ReduceOps, ParsesNamesAndRejectsUnknownOnes) {
  EXPECT_EQ(parse_reduce_op("mean"), ReduceOp::Mean);
  EXPECT_EQ(parse_reduce_op("count"), ReduceOp::Count);
  EXPECT_STREQ(to_string(ReduceOp::Std), "std");
  test::expect_error([] { parse_reduce_op("mode"); }, ErrorCode::InvalidArgument,
                     {"mode", "nanstd", "nanpercentile"});
}

TEST(ReduceOps, ResultDtypesFollowTheContract) {
  EXPECT_EQ(result_dtype(ReduceOp::Sum, DType(TypeId::U8)), DType(TypeId::U64));
  EXPECT_EQ(result_dtype(ReduceOp::Sum, DType(TypeId::I16)), DType(TypeId::I64));
  EXPECT_EQ(result_dtype(ReduceOp::Sum, DType(TypeId::Bool)), DType(TypeId::I64));
  EXPECT_EQ(result_dtype(ReduceOp::Sum, DType(TypeId::F32)), DType(TypeId::F64));
  EXPECT_EQ(result_dtype(ReduceOp::Max, DType(TypeId::U16, ByteOrder::Big)), DType(TypeId::U16));
  EXPECT_EQ(result_dtype(ReduceOp::Count, DType(TypeId::F32)), DType(TypeId::I64));
}

TEST(ReduceAxes, ParsesListsAndNormalizesNegatives) {
  EXPECT_EQ(parse_axes("1,2"), (std::vector<int>{1, 2}));
  EXPECT_EQ(normalize_axes({-1, 0}, true, 3), (std::vector<int>{0, 2}));
  EXPECT_EQ(normalize_axes({}, false, 3), (std::vector<int>{1, 2}));
  EXPECT_EQ(normalize_axes({}, false, 1), (std::vector<int>{0}));
  EXPECT_TRUE(normalize_axes({}, false, 0).empty());
}

TEST(ReduceAxes, RejectsOutOfRangeDuplicateAndMalformedAxes) {
  EXPECT_THROW(normalize_axes({3}, true, 3), Error);
  EXPECT_THROW(normalize_axes({-4}, true, 3), Error);
  EXPECT_THROW(normalize_axes({1, -2}, true, 3), Error);
  EXPECT_THROW(parse_axes("1,,2"), Error);
  EXPECT_THROW(parse_axes("x"), Error);
  EXPECT_THROW(parse_axes(""), Error);
}

TEST(Reduce, IntegerSumsWrapLikeNumpysInt64) {
  test::TempDir dir;
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  const Source src = raw_of<std::int64_t>(dir, {big, big, 3}, {3});
  const ReduceResult r = reduce(src, opts(ReduceOp::Sum));
  ASSERT_TRUE(r.shape.empty());
  // (2^63-1)*2 + 3 wraps to 1 modulo 2^64.
  EXPECT_EQ(r.as<std::int64_t>()[0], 1);
}

TEST(Reduce, MeanOfHugeInt64IsExactNotWrapped) {
  test::TempDir dir;
  const std::int64_t big = std::int64_t{1} << 62;
  const Source src = raw_of<std::int64_t>(dir, {big, big, big, big}, {4});
  const ReduceResult r = reduce(src, opts(ReduceOp::Mean));
  EXPECT_EQ(r.as<double>()[0], std::ldexp(1.0, 62));
}

TEST(Reduce, SmallIntegerVarianceIsExact) {
  test::TempDir dir;
  // Values with mean 1e4 and variance 2/3: cancellation-prone in naive float formulas.
  std::vector<std::uint16_t> v;
  for (int i = 0; i < 30000; ++i) v.push_back(static_cast<std::uint16_t>(9999 + i % 3));
  const Source src = raw_of(dir, v, {30000});
  const ReduceResult r = reduce(src, opts(ReduceOp::Var));
  EXPECT_EQ(r.as<double>()[0], 2.0 / 3.0);
}

TEST(Reduce, MinOfAnEmptyAxisIsAnError) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {}, {3, 0});
  test::expect_error([&] { reduce(src, opts(ReduceOp::Min)); }, ErrorCode::InvalidArgument,
                     {"min of an empty axis"});
  test::expect_error([&] { reduce(src, opts(ReduceOp::ArgMax)); }, ErrorCode::InvalidArgument,
                     {"argmax"});
  const ReduceResult s = reduce(src, opts(ReduceOp::Sum));
  ASSERT_EQ(s.shape, Shape{3});
  EXPECT_EQ(s.as<double>()[0], 0.0);
  const ReduceResult m = reduce(src, opts(ReduceOp::Mean));
  EXPECT_TRUE(std::isnan(m.as<double>()[2]));
}

TEST(Reduce, ZeroSlicesGiveAnEmptyResult) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {}, {0, 5});
  const ReduceResult r = reduce(src, opts(ReduceOp::Max));
  EXPECT_EQ(r.shape, Shape{0});
  EXPECT_TRUE(r.data.empty());
}

TEST(Reduce, RejectsNegativeDdofAndBadAxes) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {1, 2, 3, 4}, {2, 2});
  ReduceOptions o = opts(ReduceOp::Var);
  o.ddof = -1;
  EXPECT_THROW(reduce(src, o), Error);
  o.ddof = 0;
  o.axes = {2};
  o.axes_given = true;
  EXPECT_THROW(reduce(src, o), Error);
}

TEST(Reduce, NoAxesGivesTheElementsThemselves) {
  test::TempDir dir;
  const Source src = raw_of<std::int16_t>(dir, {-5, 7, 9, 11}, {2, 2});
  ReduceOptions o = opts(ReduceOp::Sum);
  o.axes_given = true;
  const ReduceResult r = reduce(src, o);
  ASSERT_EQ(r.shape, (Shape{2, 2}));
  EXPECT_EQ(r.as<std::int64_t>()[0], -5);
  EXPECT_EQ(r.as<std::int64_t>()[3], 11);
}

TEST(Reduce, DataAtAnOddByteOffsetGivesTheAlignedAnswers) {
  // A raw file may put its data anywhere: the dense kernels read it unaligned.
  test::TempDir dir;
  std::vector<float> v(3 * 1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 1001) - 500.5f;
  const std::string bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  test::write_file(dir.file("aligned.raw"), bytes);
  test::write_file(dir.file("odd.raw"), "x" + bytes);
  RawSpec spec;
  spec.dtype = DType(TypeId::F32);
  spec.shape = {3, 1000};
  spec.path = dir.file("aligned.raw");
  const Source aligned = open_raw(spec);
  spec.path = dir.file("odd.raw");
  spec.offset = 1;
  const Source odd = open_raw(spec);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::NanSum, ReduceOp::Var, ReduceOp::Min, ReduceOp::Max,
                      ReduceOp::Norm, ReduceOp::Histogram}) {
    EXPECT_EQ(reduce(odd, opts(op)).data, reduce(aligned, opts(op)).data) << to_string(op);
  }
}

// An unset dtype used to mean u8: a raw spec without one reduced its bytes as u8.
TEST(Reduce, ARawFileWithoutADtypeIsRefusedNotReadAsU8) {
  test::TempDir dir;
  const std::string path = dir.file("a.raw");
  test::write_file(path, std::string(16, '\1'));
  RawSpec spec;
  spec.path = path;
  spec.shape = {4, 4};
  try {
    open_raw(spec);
    FAIL() << "a raw file without a dtype was opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("no dtype given"), std::string::npos) << e.what();
  }
  // A source put together by hand with an unset dtype fails the same way in reduce().
  const Source opened = raw_of<std::uint8_t>(dir, std::vector<std::uint8_t>(16, 1), {4, 4});
  ArrayMeta meta = opened.meta();
  meta.dtype = DType();
  const Source unset(meta, MappedFile::open(path, MapMode::ReadOnly), "raw");
  try {
    reduce(unset, opts(ReduceOp::Sum));
    FAIL() << "a source without a dtype was reduced";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("dtype not set"), std::string::npos) << e.what();
  }
}

TEST(Reduce, ProgressReportsEveryTask) {
  test::TempDir dir;
  std::vector<float> v(4096, 1.0f);
  const Source src = raw_of(dir, v, {64, 64});
  ReduceOptions o = opts(ReduceOp::Sum);
  o.task_bytes = 1024;  // 4 slices a task → 16 tasks
  std::size_t last_done = 0, total = 0, calls = 0;
  o.progress = [&](const Progress& p) {
    EXPECT_GE(p.done, last_done);
    EXPECT_GE(p.elapsed_s, 0.0);
    last_done = p.done;
    total = p.total;
    ++calls;
  };
  reduce(src, o);
  EXPECT_EQ(total, 16u);
  EXPECT_EQ(last_done, 16u);
  EXPECT_EQ(calls, 16u);
}

}  // namespace
}  // namespace mmc

namespace mmc {
namespace {

TEST(ReduceLarge, CountsAndSumsPastTwoToThe32ElementsAreExact) {
  // A sparse file: 2^32 + 7 bytes, zero but for a few known values, so no disk is used.
  test::TempDir dir;
  const std::string path = dir.file("big.u8");
  const std::int64_t n = (std::int64_t{1} << 32) + 7;
  {
    RawSpec spec;
    spec.path = path;
    spec.dtype = DType(TypeId::U8);
    spec.shape = {n};
    Source created = open_raw(spec, MapMode::Create);
    std::byte* p = created.mapping().mutable_data();
    p[0] = std::byte{200};
    p[n / 2] = std::byte{55};
    p[n - 1] = std::byte{255};
    created.mapping().sync();
  }
  RawSpec spec;
  spec.path = path;
  spec.dtype = DType(TypeId::U8);
  spec.shape = {n};
  const Source src = open_raw(spec);
  // The three in one read of the 4 GiB (each op's bits are those of the op alone). argmax's
  // loop is portable C++, not an ISA kernel: at -O1 under ASan it checks every byte's load
  // (48 CPU s for the 4 GiB, against 2 in Release), so the sanitizer builds leave it to Release
  // and check the counts and sums, whose accumulators are the ones that pass 2^32.
  ReduceOptions o;
  o.pool.n_jobs = 2;
  o.ops = {ReduceOp::Count, ReduceOp::Sum};
#ifndef MMC_TEST_SANITIZED
  o.ops.push_back(ReduceOp::ArgMax);
#endif
  const std::vector<ReduceResult> r = reduce_each(src, o);
  ASSERT_EQ(r.size(), o.ops.size());
  EXPECT_EQ(r[0].as<std::int64_t>()[0], n);
  EXPECT_EQ(r[1].as<std::uint64_t>()[0], 510u);
  if (r.size() > 2) {
    EXPECT_EQ(r[2].as<std::int64_t>()[0], n - 1);
  }
}

}  // namespace
}  // namespace mmc

namespace mmc {
namespace {

ReduceOptions histogram(std::int64_t bins) {
  ReduceOptions o = opts(ReduceOp::Histogram);
  o.bins = bins;
  return o;
}

ReduceOptions histogram(std::int64_t bins, double lo, double hi) {
  ReduceOptions o = histogram(bins);
  o.range_given = true;
  o.range_lo = lo;
  o.range_hi = hi;
  return o;
}

std::vector<std::int64_t> counts_of(const ReduceResult& r) {
  return std::vector<std::int64_t>(r.as<std::int64_t>(), r.as<std::int64_t>() + r.size());
}

TEST(ReduceHistogram, ParsesItsNameAndGivesInt64CountsWithABinsAxis) {
  EXPECT_EQ(parse_reduce_op("histogram"), ReduceOp::Histogram);
  EXPECT_EQ(result_dtype(ReduceOp::Histogram, DType(TypeId::F32)), DType(TypeId::I64));
  test::TempDir dir;
  const Source src = raw_of<float>(dir, std::vector<float>(2 * 3 * 4, 1.0f), {2, 3, 4});
  ReduceOptions o = histogram(5, 0, 2);
  o.axes = {1};
  o.axes_given = true;
  const ReduceResult r = reduce(src, o);
  EXPECT_EQ(r.dtype, DType(TypeId::I64));
  EXPECT_EQ(r.shape, (Shape{2, 4, 5}));
  EXPECT_EQ(result_shape(src.meta(), o), (Shape{2, 4, 5}));
  // Each output: 3 ones, in bin 2 of [0, 0.4, 0.8, 1.2, 1.6, 2].
  EXPECT_EQ(counts_of(r)[2], 3);
  EXPECT_EQ(counts_of(r)[5 * 7 + 2], 3);
}

TEST(ReduceHistogram, LastBinIsClosedAndOutsideValuesAndNanAreNotCounted) {
  test::TempDir dir;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const Source src = raw_of<double>(dir, {0, 0.5, 1, 1.5, 2, nan, -1, 3, inf, -inf}, {10});
  EXPECT_EQ(counts_of(reduce(src, histogram(2, 0, 2))), (std::vector<std::int64_t>{2, 3}));
}

TEST(ReduceHistogram, WithoutARangeEveryOutputSharesTheWholeArraysMinAndMax) {
  test::TempDir dir;
  // Two slices, 0..4 and 5..9: the bins are [0, 4.5) and [4.5, 9] for both.
  std::vector<std::int32_t> v(10);
  for (int i = 0; i < 10; ++i) v[static_cast<std::size_t>(i)] = i;
  const Source src = raw_of(dir, v, {2, 5});
  EXPECT_EQ(counts_of(reduce(src, histogram(2))), (std::vector<std::int64_t>{5, 0, 0, 5}));
}

TEST(ReduceHistogram, AnEmptyRangeIsWidenedByAHalfOnEachSide) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {3.0f, 3.4f, 3.6f, 2.5f}, {4});
  // [2.5, 3.5]: 2.5, 3 and 3.4 counted, 3.6 not.
  EXPECT_EQ(counts_of(reduce(src, histogram(1, 3, 3))), (std::vector<std::int64_t>{3}));
  // The data's own range when all values are equal: [v - 0.5, v + 0.5].
  const Source same = raw_of<std::uint8_t>(dir, {7, 7, 7}, {3});
  EXPECT_EQ(counts_of(reduce(same, histogram(2))), (std::vector<std::int64_t>{0, 3}));
}

TEST(ReduceHistogram, EmptyDataGivesZeroCounts) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {}, {3, 0});
  const ReduceResult r = reduce(src, histogram(4));
  EXPECT_EQ(r.shape, (Shape{3, 4}));
  EXPECT_EQ(counts_of(r), std::vector<std::int64_t>(12, 0));
}

TEST(ReduceHistogram, RejectsBadBinsAndRanges) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {1, 2, 3, 4}, {4});
  test::expect_error([&] { reduce(src, histogram(0)); }, ErrorCode::InvalidArgument, {"bins"});
  test::expect_error([&] { reduce(src, histogram(2, 5, 1)); }, ErrorCode::InvalidArgument,
                     {"range", "low end"});
  test::expect_error([&] { reduce(src, histogram(2, 0, std::numeric_limits<double>::infinity())); },
                     ErrorCode::InvalidArgument, {"not finite"});
}

TEST(ReduceHistogram, NanInTheDataWithoutARangeIsAnErrorNamingTheFix) {
  test::TempDir dir;
  const Source src = raw_of<float>(dir, {1, std::numeric_limits<float>::quiet_NaN(), 3}, {3});
  test::expect_error([&] { reduce(src, histogram(3)); }, ErrorCode::InvalidArgument,
                     {"not finite", "--range"});
  EXPECT_EQ(counts_of(reduce(src, histogram(2, 0, 4))), (std::vector<std::int64_t>{1, 1}));
}

TEST(ReduceHistogram, LongRunsOfOneBinCountEveryElement) {
  // Runs long enough for the sub-histograms and, for u16, the table of bins over every value.
  test::TempDir dir;
  std::vector<std::uint16_t> v(300000, 1000);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i % 100000 % 3 == 0) v[i] = 65535;
  }
  const Source src = raw_of(dir, v, {3, 100000});
  const std::vector<std::int64_t> c = counts_of(reduce(src, histogram(4, 0, 65535)));
  // Per slice: 33334 values 65535 (last bin, closed) and 66666 values 1000 (first bin).
  EXPECT_EQ(
      c, (std::vector<std::int64_t>{66666, 0, 0, 33334, 66666, 0, 0, 33334, 66666, 0, 0, 33334}));
}

}  // namespace
}  // namespace mmc
