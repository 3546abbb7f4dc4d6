// select(): numpy's basic slicing as a view over dense and chunked arrays. Every op of a view's
// reduction equals that of numpy's a[selection] written out as its own .npy (exact ops on
// integer data; floats' order-free ops), with negative steps, indices that drop axes, empty
// selections, every backend and a warm pool; parsing and bad selections.
#include "mmc/select.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "mmc/reduce.hpp"
#include "support/test_support.hpp"

namespace mmc::select_test {
namespace {

const std::vector<std::string> kSelections = {
    "2:6,1:8:3,:", "::-1,4,2:9", "1:5,::2,::-3", "-3:,-1:-8:-2",          "3", ":,:,5", "2:2,:,:",
    "::3,::-1,:",  ":,1:2",      "-1,-1",        "5:0:-2,8:1:-3,10:0:-4",
};

// Writes cube.npy (and .zarr, .h5 chunked copies) of `descr` and order, and numpy's a[sel]
// for each selection as sel<k>.npy.
void write_cases(const test::TempDir& dir, const std::string& descr, const std::string& order) {
  std::string selections;
  for (const std::string& s : kSelections) selections += s + ";";
  test::run_python_code(R"(
import sys, numpy as np, zarr, h5py
out, descr, order, sels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(';')[:-1]
rng = np.random.default_rng(7)
a = rng.integers(0, 5000, (7, 9, 11)).astype(descr) if descr[-2] in 'iu' else \
    rng.normal(0, 100, (7, 9, 11)).astype(descr)
if descr[-2] == 'f':
    a[1, 2, 3] = np.nan
if order == 'F':
    a = np.asfortranarray(a)
np.save(out + '/cube.npy', a)
z = zarr.open(out + '/cube.zarr', mode='w', shape=a.shape, dtype=a.dtype, chunks=(3, 4, 5),
              order=order)
z[...] = a
with h5py.File(out + '/cube.h5', 'w') as f:
    f.create_dataset('data', data=a, chunks=(2, 5, 3), compression='gzip')
def item(t):
    if ':' not in t:
        return int(t)
    parts = [int(p) if p else None for p in t.split(':')]
    return slice(*parts)
for k, s in enumerate(sels):
    np.save(out + '/sel%d.npy' % k, np.ascontiguousarray(a[tuple(item(t) for t in s.split(','))]))
)",
                        {dir.path(), descr, order, selections});
}

// Ops whose bits do not depend on how the elements are grouped (a view's plan is not its
// copy's): var is exact for 2-byte integers only (their moments are integers).
std::vector<ReduceOp> exact_ops(bool floats, std::size_t itemsize) {
  if (floats) {
    return {ReduceOp::Min,    ReduceOp::Max,           ReduceOp::NanMax, ReduceOp::Count,
            ReduceOp::Median, ReduceOp::NanPercentile, ReduceOp::Any};
  }
  std::vector<ReduceOp> ops = {ReduceOp::Sum,    ReduceOp::Mean,       ReduceOp::Min,
                               ReduceOp::Max,    ReduceOp::ArgMax,     ReduceOp::Count,
                               ReduceOp::Median, ReduceOp::Percentile, ReduceOp::Histogram};
  if (itemsize == 2) ops.push_back(ReduceOp::Var);
  return ops;
}

// Each op of the view, over each axis set, against the same op over numpy's copy.
void expect_view_equals_copy(const AnyArray& view, const AnyArray& copy, bool floats,
                             const std::string& what, const PoolOptions& pool) {
  ASSERT_EQ(view.meta().shape, copy.meta().shape) << what;
  const int nd = view.meta().ndim();
  std::vector<std::vector<int>> axis_sets = {{}, {0}};
  if (nd > 1) axis_sets.push_back({nd - 1});
  for (const std::vector<int>& axes : axis_sets) {
    ReduceOptions o;
    o.ops = exact_ops(floats, view.meta().dtype.itemsize());
    // argmax over a negative step's axis is refused (tested below): left out here.
    if (!view.reversed_axes().empty()) {
      o.ops.erase(std::remove(o.ops.begin(), o.ops.end(), ReduceOp::ArgMax), o.ops.end());
    }
    o.axes = axes;
    o.axes_given = !axes.empty();
    o.q = {10, 50, 90};
    o.bins = 6;
    o.range_given = true;
    o.range_hi = 5000;
    o.pool = pool;
    if (view.meta().size() == 0 || (!axes.empty() && view.meta().shape[axes[0]] == 0)) {
      o.ops = {ReduceOp::Sum, ReduceOp::Count, ReduceOp::Median};
    }
    const std::vector<ReduceResult> got = reduce_each(view, o);
    o.pool = PoolOptions{};
    const std::vector<ReduceResult> want = reduce_each(copy, o);
    for (std::size_t k = 0; k < o.ops.size(); ++k) {
      const std::string which = what + " " + to_string(o.ops[k]) + " axes " +
                                (axes.empty() ? "default" : std::to_string(axes[0]));
      EXPECT_EQ(got[k].shape, want[k].shape) << which;
      const bool same = got[k].data == want[k].data;
      if (!same && got[k].dtype == DType(TypeId::F64) &&
          got[k].data.size() == want[k].data.size()) {
        // NaN results (a median over a NaN) compare as values.
        const double* g = got[k].as<double>();
        const double* w = want[k].as<double>();
        for (std::int64_t i = 0; i < got[k].size(); ++i) {
          EXPECT_TRUE(g[i] == w[i] || (std::isnan(g[i]) && std::isnan(w[i])))
              << which << " element " << i;
        }
      } else {
        EXPECT_TRUE(same) << which;
      }
    }
  }
}

TEST(Select, ViewsOfDenseAndChunkedArraysReduceAsNumpysCopies) {
  int views = 0;
  for (const auto& [descr, order] : std::vector<std::pair<std::string, std::string>>{
           {"<u2", "C"}, {">i4", "F"}, {"<f4", "C"}, {">f8", "F"}}) {
    test::TempDir dir;
    write_cases(dir, descr, order);
    const bool floats = descr[1] == 'f';
    const AnyArray dense = open_array(dir.file("cube.npy"));
    const AnyArray zarr = open_array(dir.file("cube.zarr"));
    const AnyArray h5 = open_array(dir.file("cube.h5") + ":/data");
    ASSERT_NE(zarr.chunked(), nullptr);
    for (std::size_t k = 0; k < kSelections.size(); ++k) {
      const Selection sel = parse_selection(kSelections[k]);
      const AnyArray copy = open_array(dir.file("sel" + std::to_string(k) + ".npy"));
      PoolOptions threads;
      threads.backend = Backend::Thread;
      threads.n_jobs = 2;
      PoolOptions processes;
      processes.n_jobs = 2;
      for (const AnyArray* base : {&dense, &zarr, &h5}) {
        const AnyArray view = select(*base, sel);
        const std::string what = descr + order + " " + base->kind() + " [" + kSelections[k] + "]";
        expect_view_equals_copy(view, copy, floats, what, threads);
        // Forked workers (each call forks: a few selections are enough).
        if (k % 4 == 1) {
          expect_view_equals_copy(view, copy, floats, what + " processes", processes);
        }
        ++views;
      }
    }
  }
  EXPECT_EQ(views, 4 * 11 * 3);
}

TEST(Select, AWarmPoolReducesViewsItsWorkersReopen) {
  test::TempDir dir;
  write_cases(dir, "<u2", "C");
  ParallelOptions parallel;
  parallel.backend = Backend::Process;
  parallel.n_jobs = 2;
  Pool pool(parallel);  // forked before any array is opened: workers open each view anew
  for (const std::string& base : {dir.file("cube.npy"), dir.file("cube.zarr")}) {
    for (std::size_t k : {0u, 1u, 7u}) {
      const AnyArray view = select(open_array(base), parse_selection(kSelections[k]));
      const AnyArray copy = open_array(dir.file("sel" + std::to_string(k) + ".npy"));
      ReduceOptions o;
      o.ops = {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Median};
      o.task_bytes = 64;
      const std::vector<ReduceResult> got = reduce_each(view, o, pool);
      const std::vector<ReduceResult> want = reduce_each(copy, o);
      for (std::size_t i = 0; i < o.ops.size(); ++i) {
        EXPECT_TRUE(got[i].data == want[i].data)
            << base << " [" << kSelections[k] << "] " << to_string(o.ops[i]);
        EXPECT_EQ(got[i].stats.tasks_in_caller, 0u) << base;
      }
    }
  }
}

TEST(Select, ParsesNumpysSlicingAndRefusesWhatNumpyRefuses) {
  const Selection s = parse_selection("2:20:3,-5:,::-1,7,:");
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(*s[0].start, 2);
  EXPECT_EQ(*s[0].stop, 20);
  EXPECT_EQ(s[0].step, 3);
  EXPECT_EQ(*s[1].start, -5);
  EXPECT_FALSE(s[1].stop.has_value());
  EXPECT_EQ(s[2].step, -1);
  EXPECT_TRUE(s[3].is_index);
  EXPECT_EQ(s[3].index, 7);
  EXPECT_EQ(format_selection(s), "2:20:3,-5:,::-1,7,:");
  // Spaces around items and a trailing comma, as numpy's a[0:2, 1,].
  EXPECT_EQ(format_selection(parse_selection(" 0:2 , 1,")), "0:2,1");
  test::expect_error([] { parse_selection("1:2:0"); }, ErrorCode::InvalidArgument,
                     {"step cannot be zero"});
  test::expect_error([] { parse_selection("1,,2"); }, ErrorCode::InvalidArgument, {"empty item"});
  test::expect_error([] { parse_selection("a:3"); }, ErrorCode::InvalidArgument,
                     {"'a' is not an integer"});
  test::expect_error([] { parse_selection("1:2:3:4"); }, ErrorCode::InvalidArgument,
                     {"more than two ':'"});

  test::TempDir dir;
  write_cases(dir, "<u2", "C");
  const AnyArray a = open_array(dir.file("cube.npy"));
  test::expect_error([&] { select(a, parse_selection("1,2,3,4")); }, ErrorCode::InvalidArgument,
                     {"4 items", "3 axes"});
  test::expect_error([&] { select(a, parse_selection(":,9")); }, ErrorCode::InvalidArgument,
                     {"index 9 is out of bounds for axis 1 with size 9"});
  test::expect_error([&] { select(a, parse_selection("1,2,3")); }, ErrorCode::InvalidArgument,
                     {"picks one element"});
  // argmax over an axis taken backwards: refused, not answered with the other tie.
  ReduceOptions o;
  o.op = ReduceOp::ArgMax;
  o.axes = {0};
  o.axes_given = true;
  test::expect_error([&] { reduce(select(a, parse_selection("::-1")), o); },
                     ErrorCode::InvalidArgument, {"argmax over axis 0", "negative step"});
  // Over a kept backward axis it is answered.
  o.axes = {1};
  const ReduceResult r = reduce(select(a, parse_selection("::-1")), o);
  EXPECT_EQ(r.shape, (Shape{7, 11}));
}

}  // namespace
}  // namespace mmc::select_test
