// mmc_reduce_bench: Google Benchmark micro benches of mmc::reduce through the public API, per
// op x dtype x backend x n_jobs, over ~256 MiB cubes in the page cache (warm cache).
//
// Names read reduce/op:mean/dtype:u8/src:npy/backend:process/jobs:2/map:fresh/cache:warm.
//   map:fresh   the source is opened (mapped) inside the timed loop, as one CLI call does: the
//               time includes mapping, page faults or MADV_POPULATE_READ, fork and dispatch.
//   map:reused  the source is opened once; after the first pass the caller's page tables are
//               filled, so serial/thread runs show the kernels' own speed. Forked workers do not
//               inherit page-table entries of shared file mappings, so process runs re-fault.
// Counters: bytes_per_second (input bytes), minflt and sys_ms per iteration (this process and
// its reaped workers), the best clue to where the time goes when it is not in the kernels. The
// label ends with the kernel variant (MMC_ISA=portable|avx2|avx512 lowers it). Histograms
// count 256 bins over the range the cube's values are drawn from.
//
// Environment: MMC_BENCH_BYTES (default 268435456) sets the cube size; MMC_BENCH_DIR the
// folder for the temporary cubes (default $TMPDIR or /var/tmp; not tmpfs, so the page cache
// behaves as for real files). The cubes are written with large write() calls: page-cache pages
// written that way come in large folios and map far faster (fewer, cheaper faults) than pages
// dirtied through mmap; a cube made by a writer program or read from disk looks like that.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mmc/mmc.hpp"

namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kImageSide = 1024;  // images are 1024 x 1024 elements
constexpr std::size_t kWriteChunk = std::size_t{16} << 20;

std::uint64_t bench_bytes() {
  const char* v = std::getenv("MMC_BENCH_BYTES");
  const std::uint64_t n = v ? std::strtoull(v, nullptr, 10) : 0;
  return n > 0 ? n : std::uint64_t{256} << 20;
}

// The temporary folder of this run; removed with everything in it at exit.
class BenchDir {
 public:
  BenchDir() {
    const char* base = std::getenv("MMC_BENCH_DIR");
    if (!base) base = std::getenv("TMPDIR");
    std::string pattern = std::string(base ? base : "/var/tmp") + "/mmc_reduce_bench.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "mmc_reduce_bench: mkdtemp %s: %s\n", pattern.c_str(),
                   std::strerror(errno));
      std::exit(1);
    }
    path_ = pattern;
  }
  BenchDir(const BenchDir&) = delete;
  BenchDir& operator=(const BenchDir&) = delete;
  ~BenchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

BenchDir& bench_dir() {
  static BenchDir dir;
  return dir;
}

struct Cube {
  std::string path;  // a .npy file
  mmc::DType dtype;
  mmc::Shape shape;
  std::uint64_t data_offset = 0;
  std::uint64_t nbytes = 0;
};

// Deterministic values in a typical range: u8 full range, u16 12-bit, i32 signed 20-bit,
// floats in [0, 1000).
template <class T>
void fill(std::vector<std::byte>& buf, std::mt19937_64& rng) {
  T* p = reinterpret_cast<T*>(buf.data());
  const std::size_t n = buf.size() / sizeof(T);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = rng();
    if constexpr (std::is_floating_point_v<T>) {
      p[i] = static_cast<T>(static_cast<double>(r >> 11) * 0x1.0p-53 * 1000.0);
    } else if constexpr (sizeof(T) == 1) {
      p[i] = static_cast<T>(r);
    } else if constexpr (std::is_unsigned_v<T>) {
      p[i] = static_cast<T>(r & 0xFFF);
    } else {
      p[i] = static_cast<T>(static_cast<std::int64_t>(r % (1u << 20)) - (1 << 19));
    }
  }
}

void write_all(int fd, const void* data, std::size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) {
      std::fprintf(stderr, "mmc_reduce_bench: write %s: %s\n", path.c_str(), std::strerror(errno));
      std::exit(1);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Writes a .npy cube of about bench_bytes() with large write() calls, then reads it back once
// so it is in the page cache (warm).
Cube make_cube(mmc::TypeId id) {
  Cube c;
  c.dtype = mmc::DType(id);
  const std::int64_t slice_bytes =
      kImageSide * kImageSide * static_cast<std::int64_t>(c.dtype.itemsize());
  const std::int64_t slices =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(bench_bytes()) / slice_bytes);
  c.shape = {slices, kImageSide, kImageSide};
  c.path = bench_dir().path() + "/cube_" + c.dtype.name() + ".npy";
  c.nbytes = static_cast<std::uint64_t>(slices * slice_bytes);
  const std::string header = mmc::make_npy_header(c.dtype, c.shape, false);
  c.data_offset = header.size();

  const int fd = ::open(c.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "mmc_reduce_bench: open %s: %s\n", c.path.c_str(), std::strerror(errno));
    std::exit(1);
  }
  write_all(fd, header.data(), header.size(), c.path);
  std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 1);
  std::vector<std::byte> buf(kWriteChunk);
  for (std::uint64_t done = 0; done < c.nbytes; done += kWriteChunk) {
    mmc::visit_type(id, [&](auto tag) { fill<decltype(tag)>(buf, rng); });
    write_all(fd, buf.data(), std::min<std::uint64_t>(kWriteChunk, c.nbytes - done), c.path);
  }
  ::close(fd);
  return c;
}

// The cube of a dtype, written on first use (outside any timed region) and kept for the run.
const Cube& cube_for(mmc::TypeId id) {
  static std::map<mmc::TypeId, Cube> cubes;
  auto it = cubes.find(id);
  if (it == cubes.end()) it = cubes.emplace(id, make_cube(id)).first;
  return it->second;
}

enum class SourceKind { Npy, Raw };
enum class MapPolicy { Fresh, Reused };

mmc::Source open_cube(const Cube& c, SourceKind kind) {
  if (kind == SourceKind::Npy) return mmc::open_npy(c.path);
  mmc::RawSpec spec;
  spec.path = c.path;
  spec.dtype = c.dtype;
  spec.shape = c.shape;
  spec.offset = c.data_offset;
  return mmc::open_raw(spec);
}

struct Usage {
  double sys_s = 0;
  long minflt = 0;
};

// This process plus its reaped children (the process backend's workers).
Usage usage_now() {
  Usage u;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage r{};
    ::getrusage(who, &r);
    u.sys_s += static_cast<double>(r.ru_stime.tv_sec) + r.ru_stime.tv_usec * 1e-6;
    u.minflt += r.ru_minflt;
  }
  return u;
}

struct Config {
  mmc::ReduceOp op;
  mmc::TypeId type;
  SourceKind source;
  mmc::Backend backend;
  int n_jobs;
  MapPolicy map;
};

void bm_reduce(benchmark::State& state, Config cfg) {
  const Cube& cube = cube_for(cfg.type);
  mmc::ReduceOptions options;
  options.op = cfg.op;
  if (cfg.op == mmc::ReduceOp::Histogram) {
    // 256 bins over the range fill() draws from: every element is counted.
    options.bins = 256;
    options.range_given = true;
    options.range_hi = cube.dtype.id() == mmc::TypeId::U8    ? 255
                       : cube.dtype.id() == mmc::TypeId::U16 ? 4095
                                                             : 1000;
  }
  options.pool.backend = cfg.backend;
  options.pool.n_jobs = cfg.n_jobs;
  std::unique_ptr<mmc::Source> reused;
  if (cfg.map == MapPolicy::Reused)
    reused = std::make_unique<mmc::Source>(open_cube(cube, cfg.source));
  {  // one untimed pass: warms the page cache (and, for map:reused, the page tables)
    const mmc::Source warm = open_cube(cube, cfg.source);
    benchmark::DoNotOptimize(mmc::reduce(reused ? *reused : warm, options).data.data());
  }
  const Usage before = usage_now();
  for (auto _ : state) {
    if (reused) {
      mmc::ReduceResult r = mmc::reduce(*reused, options);
      benchmark::DoNotOptimize(r.data.data());
    } else {
      const mmc::Source source = open_cube(cube, cfg.source);
      mmc::ReduceResult r = mmc::reduce(source, options);
      benchmark::DoNotOptimize(r.data.data());
    }
    benchmark::ClobberMemory();
  }
  const Usage after = usage_now();
  const auto iters = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(cube.nbytes));
  state.counters["minflt"] = static_cast<double>(after.minflt - before.minflt) / iters;
  state.counters["sys_ms"] = (after.sys_s - before.sys_s) * 1e3 / iters;
  state.SetLabel(mmc::format_shape(cube.shape) + " " + cube.dtype.name() + " " + mmc::kernel_isa());
}

std::string name_of(const Config& c) {
  std::string n = "reduce/op:";
  n += mmc::to_string(c.op);
  n += "/dtype:" + mmc::DType(c.type).name();
  n += c.source == SourceKind::Npy ? "/src:npy" : "/src:raw";
  n += "/backend:";
  n += mmc::to_string(c.backend);
  n += "/jobs:" + std::to_string(c.n_jobs);
  n += c.map == MapPolicy::Fresh ? "/map:fresh" : "/map:reused";
  n += "/cache:warm";
  return n;
}

void add(const Config& c) {
  benchmark::RegisterBenchmark(name_of(c).c_str(), bm_reduce, c)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

void register_all() {
  using mmc::Backend;
  using mmc::ReduceOp;
  using mmc::TypeId;
  const TypeId types[] = {TypeId::U8, TypeId::U16, TypeId::I32, TypeId::F32, TypeId::F64};
  const ReduceOp ops[] = {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Min,  ReduceOp::Max,
                          ReduceOp::Var, ReduceOp::Std,  ReduceOp::Count};
  const std::pair<Backend, int> pools[] = {{Backend::Serial, 1},
                                           {Backend::Thread, 1},
                                           {Backend::Thread, 2},
                                           {Backend::Process, 1},
                                           {Backend::Process, 2}};
  // The whole matrix, each call mapping its source as the CLI does.
  for (ReduceOp op : ops) {
    for (TypeId t : types) {
      for (auto [backend, jobs] : pools)
        add({op, t, SourceKind::Npy, backend, jobs, MapPolicy::Fresh});
    }
  }
  // Kernel speed without mapping costs, and the raw-file path.
  for (TypeId t : types) {
    for (auto [backend, jobs] : pools) {
      add({ReduceOp::Mean, t, SourceKind::Npy, backend, jobs, MapPolicy::Reused});
    }
  }
  for (auto [backend, jobs] : pools) {
    add({ReduceOp::Mean, TypeId::U8, SourceKind::Raw, backend, jobs, MapPolicy::Fresh});
  }
  // Single-thread kernel speed: serial, the mapping reused so that page faults stay out of the
  // timing. Select with --benchmark_filter='backend:serial/jobs:1/map:reused'.
  const ReduceOp kernel_ops[] = {ReduceOp::Min, ReduceOp::Max, ReduceOp::Var, ReduceOp::NanSum,
                                 ReduceOp::Histogram};
  for (ReduceOp op : kernel_ops) {
    for (TypeId t : {TypeId::U8, TypeId::F32, TypeId::F64}) {
      add({op, t, SourceKind::Npy, Backend::Serial, 1, MapPolicy::Reused});
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench_dir();  // made before any benchmark runs, removed at exit
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
