// Reductions of chunked arrays (zarr-python and h5py files) are bitwise those of the same
// values stored as a .npy file, for every op (all in one pass of reduce_each), several axes,
// chunkings, compressors, byte orders and orders, task sizes and backends; and tasks follow the
// chunk grid.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/reduce.hpp"
#include "reduce/context.hpp"
#include "reduce_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::axis_sets;
using test::TempDir;

struct ChunkedCase {
  std::string kind;  // zarr or hdf5
  std::string dtype;
  std::string shape;
  std::string order;
  std::string chunks;
  std::string compressor;
};

// Writes the chunked array and the .npy file of the same values (same dtype and order).
void make_pair(const TempDir& dir, const ChunkedCase& c, const std::string& name,
               std::string* chunked, std::string* dense) {
  *chunked = c.kind == "hdf5" ? dir.file(name + ".h5") + ":/d" : dir.file(name + ".zarr");
  *dense = dir.file(name + ".npy");
  test::run_python("convert_check.py", {"make", c.kind, *chunked, dir.file(name + ".e1.npy"),
                                        c.dtype, c.shape, c.order, c.chunks, c.compressor});
  test::run_python("convert_check.py",
                   {"make", "npy", *dense, dir.file(name + ".e2.npy"), c.dtype, c.shape, c.order});
}

std::string describe(const ChunkedCase& c, ReduceOp op, const std::vector<int>& axes,
                     std::int64_t tb, Backend backend) {
  std::string s = c.kind + " " + c.dtype + " (" + c.shape + ") " + c.order + " chunks (" +
                  c.chunks + ") " + c.compressor + ", " + to_string(op) + " axes";
  for (int a : axes) s += " " + std::to_string(a);
  return s + ", task_bytes " + std::to_string(tb) + ", " + to_string(backend);
}

TEST(ChunkedReduce, BitwiseEqualToTheDenseFileForEveryOpAndChunking) {
  const std::vector<ChunkedCase> cases = {
      {"zarr", "|u1", "20,12,10", "C", "3,5,4", "none"},
      {"zarr", "<f4", "20,12,10", "C", "7,12,10", "zlib"},
      {"zarr", ">f8", "9,8,7,6", "F", "2,3,7,4", "blosc"},
      {"zarr", "<i2", "33,17", "C", "5,5", "zstd"},
      {"zarr", "<u2", "6,50,40", "F", "6,7,40", "none"},
      {"hdf5", "<f4", "20,12,10", "C", "4,5,5", "gzip"},
      {"hdf5", "<u2", "15,9,11", "C", "15,9,1", "none"},
      {"hdf5", "<i8", "10,64", "C", "3,7", "gzip"},
  };
  const std::vector<ReduceOp> ops = {
      ReduceOp::Sum,    ReduceOp::Mean,   ReduceOp::Min,    ReduceOp::Max,      ReduceOp::Var,
      ReduceOp::Std,    ReduceOp::Count,  ReduceOp::NanSum, ReduceOp::NanMean,  ReduceOp::NanMin,
      ReduceOp::NanMax, ReduceOp::NanVar, ReduceOp::NanStd, ReduceOp::Any,      ReduceOp::All,
      ReduceOp::Norm,   ReduceOp::ArgMin, ReduceOp::ArgMax, ReduceOp::Histogram};
  TempDir dir;
  int compared = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const ChunkedCase& c = cases[i];
    std::string chunked_name, dense_name;
    make_pair(dir, c, "c" + std::to_string(i), &chunked_name, &dense_name);
    const AnyArray chunked = open_array(chunked_name);
    const AnyArray dense = open_array(dense_name);
    ASSERT_NE(chunked.chunked(), nullptr) << chunked_name;
    ASSERT_NE(dense.dense(), nullptr) << dense_name;
    ASSERT_EQ(chunked.meta().strides, dense.meta().strides) << chunked_name;
    for (const std::vector<int>& axes : axis_sets(chunked.meta().ndim())) {
      for (std::int64_t tb : {std::int64_t{0}, std::int64_t{96}, std::int64_t{1000}}) {
        // Every op of the chunked array in one pass on a pool (reduce_each: each op's bits are
        // those of the op alone), against each op alone on the dense file, serially.
        ReduceOptions o;
        o.ops = ops;
        o.axes = axes;
        o.axes_given = !axes.empty();
        o.task_bytes = tb;
        o.bins = 7;
        o.range_given = true;  // the float cases hold a NaN
        o.range_lo = -40;
        o.range_hi = 300;
        o.pool.n_jobs = 2;
        o.pool.backend = tb == 96 ? Backend::Process : Backend::Thread;
        const std::vector<ReduceResult> each = reduce_each(chunked, o);
        ASSERT_EQ(each.size(), ops.size());
        for (std::size_t k = 0; k < ops.size(); ++k) {
          const ReduceOp op = ops[k];
          ReduceOptions alone = o;
          alone.ops.clear();
          alone.op = op;
          alone.pool.backend = Backend::Serial;
          const std::string what = describe(c, op, axes, tb, resolve(o.pool).backend);
          const ReduceResult want = reduce(dense, alone);
          const ReduceResult& got = each[k];
          ASSERT_EQ(got.shape, want.shape) << what;
          ASSERT_EQ(got.dtype, want.dtype) << what;
          ASSERT_EQ(got.data.size(), want.data.size()) << what;
          ASSERT_EQ(std::memcmp(got.data.data(), want.data.data(), want.data.size()), 0) << what;
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 1000);
}

TEST(ChunkedReduce, MatchesNumpyOnAnH5pyGzipCube) {
  TempDir dir;
  const std::string path = dir.file("g.h5") + ":/images";
  test::run_python("convert_check.py", {"make", "hdf5", path, dir.file("g.npy"), "<f4", "24,30,20",
                                        "C", "5,30,20", "gzip"});
  ReduceOptions o;
  o.op = ReduceOp::NanMean;
  o.axes = {1, 2};
  o.axes_given = true;
  o.pool.n_jobs = 2;
  const ReduceResult r = reduce(open_array(path), o);
  ASSERT_EQ(r.shape, (Shape{24}));
  std::vector<double> got(24);
  std::memcpy(got.data(), r.data.data(), r.data.size());
  std::string list;
  for (double v : got) list += (list.empty() ? "" : ",") + detail::format_value(v);
  test::run_python_code(
      "import sys, numpy as np\n"
      "a = np.load(sys.argv[1])\n"
      "want = np.nanmean(a.astype(np.float64), axis=(1, 2))\n"
      "got = np.array([float(x) for x in sys.argv[2].split(',')])\n"
      "assert np.allclose(got, want, rtol=1e-12, atol=0), (got, want)\n",
      {dir.file("g.npy"), list});
}

TEST(ChunkedReduce, ADecodeErrorNamesTheChunk) {
  TempDir dir;
  const std::string path = dir.file("b.zarr");
  test::run_python("convert_check.py",
                   {"make", "zarr", path, dir.file("b.npy"), "<f4", "8,16", "C", "2,16", "zlib"});
  {
    std::FILE* f = std::fopen((path + "/2.0").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not zlib", f);
    std::fclose(f);
  }
  ReduceOptions o;
  o.op = ReduceOp::Sum;
  o.pool.n_jobs = 2;
  test::expect_error([&] { reduce(open_array(path), o); }, ErrorCode::Corrupt, {"2.0"});
}

// Tasks follow the chunk grid: each chunk is decoded once when a chunk row fits a task.
TEST(ChunkedReduce, TasksFollowTheChunkGrid) {
  struct Geometry {
    Shape shape;
    Shape chunks;
    std::vector<int> axes;
  };
  const std::vector<Geometry> geometries = {
      {{512, 256, 256}, {8, 256, 256}, {1, 2}},   // slabs of whole images
      {{512, 256, 256}, {5, 64, 256}, {1, 2}},    // rows not a divisor of the plan's task
      {{512, 256, 256}, {64, 128, 128}, {1, 2}},  // a chunk row is 4 MiB
      {{512, 256, 256}, {16, 256, 256}, {0}},     // reduce across images
      {{300, 1000}, {7, 1000}, {1}},
      {{32, 2048, 2048}, {8, 512, 512}, {1, 2}},  // images of 4 MiB: pieces of 512 rows
      {{64, 1024, 1024}, {1, 256, 1024}, {0}},    // the mean image, chunks of 256 rows
  };
  for (const Geometry& g : geometries) {
    const ArrayMeta meta = ArrayMeta::contiguous(DType(TypeId::U8), g.shape);
    detail::ReducePlan plan = detail::make_reduce_plan(meta, g.axes, 1 << 20);
    const std::int64_t decodes = detail::align_plan_to_chunks(plan, meta, g.chunks, 1 << 20, 0);
    std::int64_t n_chunks = 1;
    for (std::size_t a = 0; a < g.shape.size(); ++a) {
      n_chunks *= (g.shape[a] + g.chunks[a] - 1) / g.chunks[a];
    }
    EXPECT_EQ(decodes, n_chunks) << format_shape(g.shape) << " chunks " << format_shape(g.chunks);
    // The boxes of all tasks cover the array exactly once.
    std::int64_t covered = 0;
    for (std::int64_t t = 0; t < plan.n_tasks(); ++t)
      covered += detail::task_box(plan, meta, t).size();
    EXPECT_EQ(covered, meta.size())
        << format_shape(g.shape) << " chunks " << format_shape(g.chunks);
  }
  // Whole-image chunks and the mean image: every task must decode every chunk (the reduced
  // axis crosses them all), so the best plan has one task per worker.
  const ArrayMeta meta = ArrayMeta::contiguous(DType(TypeId::U8), {512, 1024, 1024});
  detail::ReducePlan plan = detail::make_reduce_plan(meta, {0});
  const std::int64_t before = plan.n_tasks();
  const std::int64_t decodes =
      detail::align_plan_to_chunks(plan, meta, {8, 1024, 1024}, detail::kTaskBytes, 0, 2);
  EXPECT_GT(before, 2);
  EXPECT_EQ(plan.n_tasks(), 2);
  EXPECT_EQ(decodes, 2 * 64);
}

}  // namespace
}  // namespace mmc
