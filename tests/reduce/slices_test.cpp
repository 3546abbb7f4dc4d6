// Custom kernels over slices (mmc::map_slices, with Eigen maps): results against the built-in
// reductions and numpy, the same answers from every storage of the same values (C and F .npy,
// big-endian, zarr, chunked HDF5) and every backend, and errors that name the task.
#include "mmc/slices.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "mmc/eigen.hpp"
#include "mmc/reduce.hpp"
#include "mmc/select.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::TempDir;

std::string make(const TempDir& dir, const std::string& kind, const std::string& name,
                 const std::string& dtype, const std::string& shape, const std::string& order,
                 const std::string& chunks = "", const std::string& compressor = "none") {
  const std::string path = kind == "hdf5" ? dir.file(name) + ":/d" : dir.file(name);
  std::vector<std::string> args = {"make", kind,  path, dir.file(name + ".e.npy"),
                                   dtype,  shape, order};
  if (!chunks.empty()) args.insert(args.end(), {chunks, compressor});
  test::run_python("convert_check.py", args);
  return path;
}

SliceOptions with(Backend backend, std::int64_t task_bytes = 0) {
  SliceOptions o;
  o.pool.n_jobs = 2;
  o.pool.backend = backend;
  o.task_bytes = task_bytes;
  return o;
}

// Per-image statistics a user might write: max via an Eigen matrix, row-mean spread, and the
// slice index (checks that results land in order).
struct Stats {
  double max;
  double row_mean_range;
  std::int64_t index;
  friend bool operator==(const Stats&, const Stats&) = default;
};

Stats stats_of(const SliceView<float>& s) {
  const auto m = as_matrix(s).template cast<double>();
  const Eigen::VectorXd rows = m.rowwise().mean();
  return {m.template maxCoeff<Eigen::PropagateNaN>(), rows.maxCoeff() - rows.minCoeff(), s.index};
}

TEST(MapSlices, EigenKernelMatchesTheBuiltInReductions) {
  TempDir dir;
  const AnyArray cube = open_array(make(dir, "npy", "u.npy", "|u1", "37,40,50", "C"));
  ReduceOptions mean;
  mean.op = ReduceOp::Mean;
  mean.pool.n_jobs = 2;
  const ReduceResult want = reduce(cube, mean);
  std::vector<double> want_means(37);
  std::memcpy(want_means.data(), want.data.data(), want.data.size());
  for (Backend b : {Backend::Process, Backend::Thread, Backend::Serial}) {
    for (std::int64_t tb : {std::int64_t{0}, std::int64_t{5000}}) {
      const std::vector<double> got = map_slices<std::uint8_t, double>(
          cube,
          [](const SliceView<std::uint8_t>& s) {
            return as_array(s).template cast<double>().sum() / static_cast<double>(s.size());
          },
          with(b, tb));
      ASSERT_EQ(got.size(), 37u);
      for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_NEAR(got[i], want_means[i], 1e-12 * std::abs(want_means[i])) << i;
      }
    }
  }
}

TEST(MapSlices, EveryStorageOfTheSameValuesGivesTheSameResults) {
  TempDir dir;
  const std::vector<std::string> sources = {
      make(dir, "npy", "c.npy", "<f4", "21,12,18", "C"),
      make(dir, "npy", "f.npy", "<f4", "21,12,18", "F"),
      make(dir, "npy", "b.npy", ">f4", "21,12,18", "C"),
      make(dir, "zarr", "z.zarr", "<f4", "21,12,18", "C", "4,5,18", "blosc"),
      make(dir, "zarr", "zf.zarr", ">f4", "21,12,18", "F", "3,12,7", "zlib"),
      make(dir, "hdf5", "h.h5", "<f4", "21,12,18", "C", "6,12,18", "gzip"),
  };
  std::vector<Stats> reference;
  for (const std::string& src : sources) {
    for (Backend b : {Backend::Process, Backend::Thread}) {
      const std::vector<Stats> got =
          map_slices<float, Stats>(open_array(src), stats_of, with(b, 2000));
      ASSERT_EQ(got.size(), 21u) << src;
      for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].index, std::int64_t(i));
      if (reference.empty()) {
        reference = got;
        continue;
      }
      // NaN != NaN in Stats' ==, so compare bytes: the values are computed from identical data.
      EXPECT_EQ(std::memcmp(got.data(), reference.data(), got.size() * sizeof(Stats)), 0)
          << src << " " << to_string(b);
    }
  }
  // The reference against numpy (image 0 holds a NaN at element 3: its max is NaN).
  std::string list;
  for (const Stats& s : reference) list += (list.empty() ? "" : ",") + std::to_string(s.max);
  test::run_python_code(
      "import sys, numpy as np\n"
      "a = np.load(sys.argv[1]).astype(np.float64)\n"
      "want = a.max(axis=(1, 2))\n"
      "got = np.array([float(x) for x in sys.argv[2].split(',')])\n"
      "assert np.allclose(got, want, rtol=1e-6, equal_nan=True), (got, want)\n",
      {dir.file("c.npy.e.npy"), list});
}

// A slice's elements in order, folded so that any element out of place changes the result.
struct Fingerprint {
  std::int64_t index;
  std::int64_t size;
  double weighted;  // sum of value * (position + 1): exact for these small integers
  friend bool operator==(const Fingerprint&, const Fingerprint&) = default;
};

Fingerprint fingerprint(const SliceView<std::int16_t>& s) {
  double w = 0;
  for (std::int64_t i = 0; i < s.size(); ++i) w += double(s.data[i]) * double(i + 1);
  return {s.index, s.size(), w};
}

TEST(MapSlices, SlicesAlongEveryAxisAreThoseOfTheCOrderArray) {
  TempDir dir;
  const std::vector<std::string> sources = {
      make(dir, "npy", "c.npy", "<i2", "9,7,5", "C"),
      make(dir, "npy", "f.npy", "<i2", "9,7,5", "F"),
      make(dir, "npy", "b.npy", ">i2", "9,7,5", "C"),
      make(dir, "zarr", "z.zarr", "<i2", "9,7,5", "C", "4,3,2", "zlib"),
      make(dir, "hdf5", "h.h5", "<i2", "9,7,5", "C", "2,7,5", "gzip"),
  };
  // The reference from the C-order file's bytes, by index arithmetic.
  const AnyArray c = open_array(sources[0]);
  const auto* v = reinterpret_cast<const std::int16_t*>(c.dense()->data());
  const Shape shape = {9, 7, 5};
  for (const int axis : {0, 1, 2, -1, -2}) {
    const int a = axis < 0 ? axis + 3 : axis;
    std::vector<Fingerprint> want;
    for (std::int64_t i = 0; i < shape[a]; ++i) {
      Fingerprint f{i, 9 * 7 * 5 / shape[a], 0};
      std::int64_t position = 0;
      for (std::int64_t x = 0; x < 9; ++x) {
        for (std::int64_t y = 0; y < 7; ++y) {
          for (std::int64_t z = 0; z < 5; ++z) {
            const std::int64_t at[3] = {x, y, z};
            if (at[a] != i) continue;
            f.weighted += double(v[(x * 7 + y) * 5 + z]) * double(++position);
          }
        }
      }
      want.push_back(f);
    }
    for (const std::string& src : sources) {
      for (Backend b : {Backend::Process, Backend::Thread}) {
        SliceOptions o = with(b, 70);  // a task of one or a few slices: several tasks
        o.axis = axis;
        EXPECT_EQ((map_slices<std::int16_t, Fingerprint>(open_array(src), fingerprint, o)), want)
            << src << " axis " << axis << " " << to_string(b);
      }
    }
  }
  SliceOptions o;
  o.axis = 3;
  test::expect_error([&] { map_slices<std::int16_t, Fingerprint>(c, fingerprint, o); },
                     ErrorCode::InvalidArgument, {"axis 3", "3-d"});
  o.axis = -4;
  test::expect_error([&] { map_slices<std::int16_t, Fingerprint>(c, fingerprint, o); },
                     ErrorCode::InvalidArgument, {"axis -4"});
}

TEST(MapSlices, MemoryTheCallerLendsIsReadInPlaceAndLeftAsItWas) {
  // An anonymous buffer (not a file): MADV_DONTNEED behind a scan would zero it, so a borrowed
  // mapping must take no hint. Every backend reads it where it is (forked workers share it).
  std::vector<std::int16_t> values(9 * 7 * 5);
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<std::int16_t>(i * 37 % 1001);
  const std::vector<std::int16_t> before = values;
  const auto* bytes = reinterpret_cast<const std::byte*>(values.data());
  const AnyArray lent(Source(ArrayMeta::contiguous(DType(TypeId::I16), {9, 7, 5}),
                             MappedFile::borrow(bytes, values.size() * 2, "the lent buffer"),
                             "memory"));
  EXPECT_TRUE(lent.dense()->mapping().borrowed());
  EXPECT_EQ(lent.dense()->mapping().descriptor(), -1);
  for (Backend b : {Backend::Process, Backend::Thread, Backend::Serial}) {
    const std::vector<std::int64_t> where = map_slices<std::int16_t, std::int64_t>(
        lent,
        [](const SliceView<std::int16_t>& s) {
          return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(s.data));
        },
        with(b, 70));
    for (std::size_t i = 0; i < where.size(); ++i) {
      EXPECT_EQ(where[i], static_cast<std::int64_t>(
                              reinterpret_cast<std::uintptr_t>(values.data() + i * 35)));
    }
    ReduceOptions o;
    o.ops = {ReduceOp::Sum, ReduceOp::Max};
    o.axes = {1, 2};
    o.pool.backend = b;
    o.pool.n_jobs = 2;
    o.task_bytes = 100;
    const std::vector<ReduceResult> r = reduce_each(lent, o);
    for (std::int64_t i = 0; i < 9; ++i) {
      std::int64_t sum = 0;
      std::int16_t max = before[static_cast<std::size_t>(i * 35)];
      for (std::int64_t k = 0; k < 35; ++k) {
        sum += before[static_cast<std::size_t>(i * 35 + k)];
        max = std::max(max, before[static_cast<std::size_t>(i * 35 + k)]);
      }
      EXPECT_EQ(r[0].as<std::int64_t>()[i], sum) << to_string(b);
      EXPECT_EQ(r[1].as<std::int16_t>()[i], max) << to_string(b);
    }
    EXPECT_EQ(values, before) << "the lent memory changed (" << to_string(b) << ")";
  }
  // Negative steps: the slices in the view's order (select.hpp keeps those axes ascending).
  const AnyArray flipped = select(lent, parse_selection("::-2,:,::-1"));
  for (Backend b : {Backend::Process, Backend::Thread, Backend::Serial}) {
    for (const int axis : {0, 2}) {
      SliceOptions o = with(b, 30);
      o.axis = axis;
      const std::vector<Fingerprint> got =
          map_slices<std::int16_t, Fingerprint>(flipped, fingerprint, o);
      const std::int64_t n = 5;  // ::-2 of 9 images, ::-1 of 5 columns: 5 slices of 35 either way
      ASSERT_EQ(got.size(), static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) {
        Fingerprint want{i, 35, 0};
        std::int64_t position = 0;
        for (std::int64_t x = 0; x < 5; ++x) {
          for (std::int64_t y = 0; y < 7; ++y) {
            for (std::int64_t z = 0; z < 5; ++z) {
              const std::int64_t at[3] = {x, y, z};
              if (at[axis] != i) continue;
              const std::int64_t src = ((8 - 2 * x) * 7 + y) * 5 + (4 - z);
              want.weighted += double(before[static_cast<std::size_t>(src)]) * double(++position);
            }
          }
        }
        EXPECT_EQ(got[static_cast<std::size_t>(i)], want) << to_string(b) << " axis " << axis;
      }
    }
  }
  // A selection of it is lent memory too.
  const AnyArray part = select(lent, parse_selection("2:5,::2"));
  EXPECT_TRUE(part.dense()->mapping().borrowed());
  ReduceOptions all;
  all.op = ReduceOp::Sum;
  all.axes = {0, 1, 2};
  all.axes_given = true;
  std::int64_t want = 0;
  for (std::int64_t i = 2; i < 5; ++i) {
    for (std::int64_t j = 0; j < 7; j += 2) {
      for (std::int64_t k = 0; k < 5; ++k)
        want += before[static_cast<std::size_t>((i * 7 + j) * 5 + k)];
    }
  }
  EXPECT_EQ(reduce(part, all).as<std::int64_t>()[0], want);
}

TEST(MapSlices, ErrorsNameTheTaskAndTheWrongType) {
  TempDir dir;
  const AnyArray cube = open_array(make(dir, "npy", "e.npy", "<i2", "10,4,4", "C"));
  test::expect_error(
      [&] { map_slices<float, double>(cube, [](const SliceView<float>&) { return 0.0; }); },
      ErrorCode::InvalidArgument, {"i16", "f32"});
  for (Backend b : {Backend::Process, Backend::Thread, Backend::Serial}) {
    test::expect_error(
        [&] {
          map_slices<std::int16_t, int>(
              cube,
              [](const SliceView<std::int16_t>& s) -> int {
                if (s.index == 7) throw Error(ErrorCode::Corrupt, "bad image 7");
                return 0;
              },
              with(b, 32));
        },
        ErrorCode::Corrupt, {"bad image 7", "task"});
  }
}

}  // namespace
}  // namespace mmc
