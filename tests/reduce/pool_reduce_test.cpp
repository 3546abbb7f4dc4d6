// reduce(array, options, pool): a warm mmc::Pool gives bitwise the answers of reduce(array,
// options) for every op, dtype, axis set, source and backend, stays usable for many files and
// after a worker is killed, never reads a file that replaced the source, and leaks nothing.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "io/source_ticket.hpp"
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

#ifdef MMC_TEST_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

const std::vector<ReduceOp> kOps = {
    ReduceOp::Sum,    ReduceOp::Mean,   ReduceOp::Min,    ReduceOp::Max,      ReduceOp::Var,
    ReduceOp::Std,    ReduceOp::Count,  ReduceOp::NanSum, ReduceOp::NanMean,  ReduceOp::NanMin,
    ReduceOp::NanMax, ReduceOp::NanVar, ReduceOp::NanStd, ReduceOp::Any,      ReduceOp::All,
    ReduceOp::Norm,   ReduceOp::ArgMin, ReduceOp::ArgMax, ReduceOp::Histogram};

// Writes an array with convert_check.py (numpy, h5py, zarr-python) and opens it.
AnyArray make_array(const TempDir& dir, const std::string& kind, const std::string& name,
                    const std::string& dtype, const std::string& shape, const std::string& order,
                    const std::string& chunks = "", const std::string& compressor = "none") {
  const std::string path = kind == "hdf5" ? dir.file(name + ".h5") + ":/d" : dir.file(name);
  std::vector<std::string> args = {"make", kind,  path, dir.file(name + ".expected.npy"),
                                   dtype,  shape, order};
  if (!chunks.empty()) {
    args.push_back(chunks);
    args.push_back(compressor);
  }
  test::run_python("convert_check.py", args);
  if (kind != "raw") return open_array(path);
  RawSpec spec;
  spec.dtype = DType::from_numpy_descr(dtype);
  spec.shape = parse_shape(shape);
  return open_array(path, &spec);
}

ReduceOptions options_for(ReduceOp op, const std::vector<int>& axes, std::int64_t task_bytes) {
  ReduceOptions o;
  o.op = op;
  o.axes = axes;
  o.axes_given = !axes.empty();
  o.task_bytes = task_bytes;
  o.bins = 7;
  o.pool.backend = Backend::Serial;
  if (op == ReduceOp::Histogram && task_bytes == 0) {
    o.range_given = true;  // the float cases hold a NaN: the data's range would refuse them
    o.range_lo = -40;
    o.range_hi = 300;
  }
  return o;
}

void expect_same(const ReduceResult& got, const ReduceResult& want, const std::string& what) {
  ASSERT_EQ(got.shape, want.shape) << what;
  ASSERT_EQ(got.dtype, want.dtype) << what;
  ASSERT_EQ(got.data.size(), want.data.size()) << what;
  ASSERT_EQ(std::memcmp(got.data.data(), want.data.data(), want.data.size()), 0) << what;
}

// The error a call throws (code and message), or nothing.
struct Thrown {
  bool thrown = false;
  ErrorCode code = ErrorCode::Internal;
  std::string message;
};

template <class F>
Thrown thrown_by(F&& f) {
  Thrown t;
  try {
    f();
  } catch (const Error& e) {
    t.thrown = true;
    t.code = e.code();
    t.message = e.what();
  }
  return t;
}

Pool make_pool(Backend backend, int n_jobs) {
  ParallelOptions p;
  p.backend = backend;
  p.n_jobs = n_jobs;
  return Pool(p);
}

TEST(PoolReduce, BitwiseEqualToPlainReduceForEveryOpSourceAndBackend) {
  TempDir dir;
  struct Named {
    std::string what;
    AnyArray array;
  };
  std::vector<Named> arrays;
  arrays.push_back({"npy u8 C", make_array(dir, "npy", "a.npy", "|u1", "10,12,9", "C")});
  arrays.push_back({"npy >f8 F", make_array(dir, "npy", "b.npy", ">f8", "9,8,7", "F")});
  arrays.push_back({"npy <i2", make_array(dir, "npy", "c.npy", "<i2", "33,17", "C")});
  arrays.push_back({"npy bool", make_array(dir, "npy", "d.npy", "|b1", "6,5,4", "C")});
  arrays.push_back({"raw <f4", make_array(dir, "raw", "e.raw", "<f4", "20,12,10", "C")});
  arrays.push_back({"hdf5 contiguous <u2", make_array(dir, "hdf5", "f", "<u2", "15,9,11", "C")});
  arrays.push_back(
      {"hdf5 chunked <f4", make_array(dir, "hdf5", "g", "<f4", "20,12,10", "C", "4,5,5", "gzip")});
  arrays.push_back(
      {"zarr u1", make_array(dir, "zarr", "h.zarr", "|u1", "20,12,10", "C", "3,5,4", "blosc")});
  arrays.push_back(
      {"zarr >f8 F", make_array(dir, "zarr", "i.zarr", ">f8", "9,8,7,6", "F", "2,3,7,4", "zlib")});
  ASSERT_NE(arrays[5].array.dense(), nullptr) << "the contiguous HDF5 dataset is mapped";
  ASSERT_NE(arrays[6].array.chunked(), nullptr);

  // Every case's plain answer (or refusal) first, once; then each pool in turn, one at a time
  // (four held at once hung once under ASan: docs/ARCHITECTURE.md, "Next").
  struct Case {
    const Named* named;
    ReduceOptions options;
    std::string what;
    Thrown plain_error;
    ReduceResult plain;
  };
  std::vector<Case> cases;
  for (const Named& named : arrays) {
    for (const std::vector<int>& axes : axis_sets(named.array.meta().ndim())) {
      // 96 bytes per task: many tasks, outputs split in pieces; 0: the default plan (not in
      // the sanitizer builds, where the many-task plan alone keeps the test under a minute).
      for (std::int64_t tb : {std::int64_t{0}, std::int64_t{96}}) {
        if (kSanitized && tb == 0) continue;
        for (ReduceOp op : kOps) {
          Case c{&named,
                 options_for(op, axes, tb),
                 named.what + " " + to_string(op) + " axes",
                 {},
                 {}};
          for (int a : axes) c.what += " " + std::to_string(a);
          c.what += " task_bytes " + std::to_string(tb);
          c.plain_error = thrown_by([&] { c.plain = reduce(named.array, c.options); });
          cases.push_back(std::move(c));
        }
      }
    }
  }

  struct PoolCase {
    Backend backend;
    int n_jobs;
  };
  const std::vector<PoolCase> pool_cases = {
      {Backend::Process, 2}, {Backend::Thread, 2}, {Backend::Serial, 1}, {Backend::Process, 3}};
  int compared = 0;
  for (const PoolCase& pc : pool_cases) {
    Pool pool = make_pool(pc.backend, pc.n_jobs);
    for (const Case& c : cases) {
      if (pc.n_jobs == 3 && c.options.task_bytes == 0) continue;
      const std::string what =
          c.what + " " + to_string(pc.backend) + " x" + std::to_string(pc.n_jobs);
      if (c.plain_error.thrown) {
        // A histogram of NaN data without a range: the same refusal.
        const Thrown pool_error = thrown_by([&] { reduce(c.named->array, c.options, pool); });
        EXPECT_TRUE(pool_error.thrown) << what;
        EXPECT_EQ(pool_error.code, c.plain_error.code) << what;
        EXPECT_EQ(pool_error.message, c.plain_error.message) << what;
        continue;
      }
      expect_same(reduce(c.named->array, c.options, pool), c.plain, what);
      ++compared;
    }
  }
  EXPECT_GT(compared, kSanitized ? 1000 : 2000);
}

TEST(PoolReduce, OneProcessPoolReducesManyFilesOfManyDtypesInTurn) {
  TempDir dir;
  Pool pool = make_pool(Backend::Process, 2);
  const std::vector<std::string> dtypes = {"|u1", "<i2", ">u4", "<f4", ">f8", "<i8", "|b1"};
  std::string code = "import sys, numpy as np\n";
  for (int i = 0; i < 21; ++i) {
    const std::string dtype = dtypes[static_cast<std::size_t>(i) % dtypes.size()];
    code += "np.save(sys.argv[1] + '/f" + std::to_string(i) + ".npy', (np.arange(" +
            std::to_string(60 + i * 12) + ") * 37 % 101).astype('" + dtype + "').reshape(" +
            std::to_string(5 + i) + ", -1, " + "2 if " + std::to_string(60 + i * 12) + " % (2 * " +
            std::to_string(5 + i) + ") == 0 else 1))\n";
  }
  test::run_python_code(code, {dir.file("")});
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 21; ++i) {
      const std::string path = dir.file("f" + std::to_string(i) + ".npy");
      const AnyArray array = open_array(path);
      for (ReduceOp op : {ReduceOp::Mean, ReduceOp::Max, ReduceOp::ArgMin, ReduceOp::Histogram}) {
        const ReduceOptions o = options_for(op, {}, round == 0 ? 0 : 64);
        expect_same(reduce(array, o, pool), reduce(array, o), path + " " + to_string(op));
      }
    }
  }
}

// Writes a .npy of n float64 values start, start + 1, ... through numpy, to `path` directly.
void write_counting_npy(const std::string& path, int n, int start) {
  test::run_python_code(
      "import sys, numpy as np\n"
      "np.save(sys.argv[1], np.arange(int(sys.argv[2]), dtype=np.float64).reshape(4, -1) + "
      "int(sys.argv[3]))\n",
      {path, std::to_string(n), std::to_string(start)});
}

TEST(PoolReduce, ASourceReplacedByRenameIsNeverReadInItsPlace) {
  TempDir dir;
  const std::string path = dir.file("a.npy");
  write_counting_npy(path, 64, 0);
  Pool pool = make_pool(Backend::Process, 2);
  const AnyArray old_array = open_array(path);
  const ReduceOptions o = options_for(ReduceOp::Sum, {}, 0);
  const ReduceResult before = reduce(old_array, o, pool);
  expect_same(before, reduce(old_array, o), "before the rename");

  write_counting_npy(dir.file("b.npy"), 64, 1000);
  ASSERT_EQ(std::rename(dir.file("b.npy").c_str(), path.c_str()), 0);
  // The old source still reads its own bytes, and the workers read them (the caller's open
  // file travels with the batches), not the new file's.
  const ReduceResult old_after = reduce(old_array, o, pool);
  expect_same(old_after, before, "the old source after the rename");
  EXPECT_EQ(old_after.stats.tasks_in_caller, 0U);
  // Opened again, the new file gives its own answer.
  const AnyArray new_array = open_array(path);
  const ReduceResult after = reduce(new_array, o, pool);
  expect_same(after, reduce(new_array, o), "the new file");
  EXPECT_NE(std::memcmp(after.data.data(), before.data.data(), before.data.size()), 0);
}

TEST(PoolReduce, ARemovedSourceIsReducedByTheWorkers) {
  TempDir dir;
  const std::string path = dir.file("gone.npy");
  write_counting_npy(path, 4096, 3);
  Pool pool = make_pool(Backend::Process, 2);
  const AnyArray array = open_array(path);
  const ReduceOptions o = options_for(ReduceOp::Mean, {1}, 4096);  // several tasks
  const ReduceResult want = reduce(array, o);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  const ReduceResult got = reduce(array, o, pool);
  expect_same(got, want, "a removed .npy on the pool");
  EXPECT_GT(got.stats.tasks, 1U);
  EXPECT_EQ(got.stats.tasks_in_caller, 0U);
  // Raw files travel the same way.
  const std::string raw = dir.file("gone.raw");
  {
    std::ofstream out(raw, std::ios::binary);
    for (int i = 0; i < 8192; ++i) {
      const float v = static_cast<float>(i % 97) * 0.5F;
      out.write(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  RawSpec spec;
  spec.dtype = DType::from_numpy_descr("<f4");
  spec.shape = {8, 1024};
  const AnyArray raw_array = open_array(raw, &spec);
  const ReduceResult raw_want = reduce(raw_array, o);
  ASSERT_EQ(::unlink(raw.c_str()), 0);
  const ReduceResult raw_got = reduce(raw_array, o, pool);
  expect_same(raw_got, raw_want, "a removed raw file on the pool");
  EXPECT_EQ(raw_got.stats.tasks_in_caller, 0U);
}

TEST(SourceTicket, OpensTheFileTheCallerHasOpenEvenAfterARename) {
  TempDir dir;
  const std::string path = dir.file("t.npy");
  write_counting_npy(path, 64, 0);
  const Source source = open_npy(path);
  std::string why;
  const std::optional<detail::SourceTicket> ticket = detail::ticket_of(source, &why);
  ASSERT_TRUE(ticket.has_value()) << why;
  EXPECT_EQ(ticket->fd, source.mapping().descriptor());
  const auto same_bytes = [&](const detail::SourceTicket& t) {
    const AnyArray again = detail::open_ticket(t);
    ASSERT_NE(again.dense(), nullptr);
    EXPECT_EQ(again.meta().shape, source.meta().shape);
    EXPECT_EQ(std::memcmp(again.dense()->data(), source.data(), source.meta().nbytes()), 0);
  };
  same_bytes(*ticket);
  write_counting_npy(dir.file("u.npy"), 64, 7);
  ASSERT_EQ(std::rename(dir.file("u.npy").c_str(), path.c_str()), 0);
  // The ticket names the open file, not the path: still the caller's bytes.
  const std::optional<detail::SourceTicket> after = detail::ticket_of(source, &why);
  ASSERT_TRUE(after.has_value()) << why;
  same_bytes(*after);
  // Copy-on-write keeps its writes in this process: no ticket.
  EXPECT_FALSE(detail::ticket_of(open_npy(path, MapMode::CopyOnWrite), &why).has_value());
  EXPECT_NE(why.find("copy-on-write"), std::string::npos) << why;
  // A ticket without its descriptor is refused, not reopened by path.
  detail::SourceTicket orphan = *ticket;
  orphan.fd = -1;
  test::expect_error([&] { detail::open_ticket(orphan); }, ErrorCode::Internal,
                     {path, "without the open file"});
}

TEST(PoolReduce, ReadsChunkedHdf5WithAPoolMadeWhileTheCallerHadItOpen) {
  TempDir dir;
  const AnyArray array = make_array(dir, "hdf5", "h", "<i8", "10,64", "C", "3,7", "gzip");
  const ReduceOptions o = options_for(ReduceOp::Sum, {}, 0);
  const ReduceResult want = reduce(array, o);  // opens the file in this process
  Pool pool = make_pool(Backend::Process, 2);
  const ReduceResult got = reduce(array, o, pool);
  expect_same(got, want, "hdf5 opened before the pool");
  // The workers cannot use libhdf5 (the caller had files open when the pool was made): the
  // caller ran every task itself.
  EXPECT_EQ(got.stats.tasks_in_caller, got.stats.tasks);
}

TEST(PoolReduce, TaskErrorsAreThoseOfThePlainReduce) {
  TempDir dir;
  const AnyArray array = make_array(dir, "zarr", "b.zarr", "<f4", "8,16", "C", "2,16", "zlib");
  test::write_file(dir.file("b.zarr/2.0"), "not zlib");
  for (Backend backend : {Backend::Process, Backend::Thread, Backend::Serial}) {
    // Tasks of a chunked array are grouped for the workers: the same pool options number them
    // alike.
    ReduceOptions o = options_for(ReduceOp::Sum, {}, 0);
    o.pool.backend = backend;
    o.pool.n_jobs = 2;
    const Thrown plain = thrown_by([&] { reduce(array, o); });
    ASSERT_TRUE(plain.thrown);
    Pool pool = make_pool(backend, 2);
    const Thrown pooled = thrown_by([&] { reduce(array, o, pool); });
    EXPECT_TRUE(pooled.thrown) << to_string(backend);
    EXPECT_EQ(pooled.code, ErrorCode::Corrupt) << to_string(backend);
    EXPECT_EQ(pooled.message, plain.message) << to_string(backend);
  }
}

// Pids of this process's grandchildren: a process pool's workers (children of its fork server).
std::vector<pid_t> grandchildren() {
  auto parent_of = [](pid_t pid) -> pid_t {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) return -1;
    char state = 0;
    int ppid = -1;
    std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid);
    return state == 'Z' ? -1 : ppid;
  };
  std::vector<pid_t> all;
  DIR* proc = opendir("/proc");
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = std::atoi(entry->d_name);
    if (pid > 0) all.push_back(pid);
  }
  closedir(proc);
  std::vector<pid_t> found;
  const pid_t self = getpid();
  for (pid_t pid : all) {
    const pid_t parent = parent_of(pid);
    if (parent > 0 && parent != self && parent_of(parent) == self) found.push_back(pid);
  }
  return found;
}

TEST(PoolReduce, AWorkerKilledMidReduceFailsTheCallAndThePoolReducesAgain) {
  TempDir dir;
  const std::string path = dir.file("k.npy");
  write_counting_npy(path, 4096, 0);
  const AnyArray array = open_array(path);
  // Each task of the pool's workers sleeps first (the hook is read in the worker), so the kill
  // lands while one runs.
  setenv("MMC_DEBUG_TASK_DELAY_MS", "1500", 1);
  Pool pool = make_pool(Backend::Process, 2);
  unsetenv("MMC_DEBUG_TASK_DELAY_MS");
  const ReduceOptions o = options_for(ReduceOp::Mean, {}, 0);
  auto call =
      std::async(std::launch::async, [&] { return thrown_by([&] { reduce(array, o, pool); }); });
  std::vector<pid_t> workers;
  for (int i = 0; i < 200 && workers.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    workers = grandchildren();
  }
  ASSERT_FALSE(workers.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (pid_t pid : workers) kill(pid, SIGKILL);
  const Thrown lost = call.get();
  EXPECT_TRUE(lost.thrown);
  EXPECT_EQ(lost.code, ErrorCode::WorkerLost) << lost.message;
  // Named by the reduction's tasks, not by the pool's batch index.
  EXPECT_NE(lost.message.find("reduce task"), std::string::npos) << lost.message;
  // The call failed at the first death; the pool learns of the other on its own. Wait until
  // it replaced both: a task handed to a worker that died idle fails too (its payload went
  // to that worker only), which is not what this test is about.
  for (int i = 0; i < 1000; ++i) {
    const std::vector<pid_t> now = grandchildren();
    const bool replaced = now.size() >= 2 && std::none_of(now.begin(), now.end(), [&](pid_t p) {
                            return std::find(workers.begin(), workers.end(), p) != workers.end();
                          });
    if (replaced) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  expect_same(reduce(array, o, pool), reduce(array, o), "the same pool after the kill");
}

int open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;
}

TEST(PoolReduce, LeavesNoDescriptorOpenInTheCaller) {
  TempDir dir;
  const AnyArray chunked = make_array(dir, "hdf5", "c", "<u2", "12,9,8", "C", "3,9,8", "gzip");
  const AnyArray dense = make_array(dir, "npy", "d.npy", "<f4", "12,9,8", "C");
  for (Backend backend : {Backend::Process, Backend::Thread}) {
    Pool pool = make_pool(backend, 2);
    const ReduceOptions o = options_for(ReduceOp::Var, {}, 0);
    // First uses: the pool's own descriptors, and the thread backend's HDF5 file, opened once
    // in this process and kept while the array lives.
    reduce(dense, o, pool);
    reduce(chunked, o, pool);
    const int before = open_fds();
    for (int i = 0; i < 20; ++i) {
      reduce(dense, o, pool);
      reduce(chunked, o, pool);
      reduce(open_array(dir.file("d.npy")), o, pool);
    }
    EXPECT_EQ(open_fds(), before) << to_string(backend);
  }
}

TEST(PoolReduce, ReportsProgressOverEveryTask) {
  TempDir dir;
  const AnyArray array = make_array(dir, "npy", "p.npy", "<f8", "40,30", "C");
  Pool pool = make_pool(Backend::Process, 2);
  ReduceOptions o = options_for(ReduceOp::Sum, {}, 64);
  std::size_t last_done = 0, last_total = 0;
  o.progress = [&](const Progress& p) {
    EXPECT_GT(p.done, last_done);
    EXPECT_GE(p.elapsed_s, 0.0);
    last_done = p.done;
    last_total = p.total;
  };
  const ReduceResult r = reduce(array, o, pool);
  EXPECT_GT(last_total, 1u);
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(r.stats.tasks, last_total);
}

}  // namespace
}  // namespace mmc
