// mmc_roofline: the read bandwidth this machine can give a reduction, printed as JSON lines
// (name, threads, bytes, seconds, gbps) for bench/compare.py and the plots.
//
// Probes, each the best of --repeat passes:
//   mem_anon     AVX2 u8 sum over a prefaulted anonymous buffer (1 thread, then all CPUs)
//   mem_file     the same sum over a MAP_SHARED mapping of a file in the page cache, prefaulted
//                with MADV_POPULATE_READ: the ceiling for mmcompute's warm-cache reduce
//   disk_cold    sequential read() of the file after dropping the page cache (root only;
//                otherwise a line with "measured": false and the reason)
//   disk_cold_mmap_{fault,populate8M,sequential_populate8M,willneed}
//                a cold single-thread scan of the file through a mapping, fed by page-fault
//                readahead alone, by MADV_POPULATE_READ per 8 MiB chunk (on a MADV_SEQUENTIAL
//                mapping or not), or by that plus MADV_WILLNEED 32 MiB ahead: which feeding
//                policy reaches the disk's rate
// The sum is what a u8 reduction does (SAD against zero into 64-bit lanes), so the figure is
// the memory system's, not the ALU's. Only ratios taken in one run on one machine mean anything.
#include <fcntl.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kIoChunk = std::size_t{16} << 20;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "mmc_roofline: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

// Move-only file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Move-only read-only (or anonymous read-write) mapping.
class Mapping {
 public:
  Mapping(void* p, std::size_t n) : p_(static_cast<std::uint8_t*>(p)), n_(n) {}
  Mapping(Mapping&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (p_) ::munmap(p_, n_);
  }
  std::uint8_t* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  std::uint8_t* p_;
  std::size_t n_;
};

__attribute__((target("avx2"))) std::uint64_t sum_u8_avx2(const std::uint8_t* p, std::size_t n) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
  std::size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i*)(p + i)), zero));
    a1 = _mm256_add_epi64(a1,
                          _mm256_sad_epu8(_mm256_loadu_si256((const __m256i*)(p + i + 32)), zero));
    a2 = _mm256_add_epi64(a2,
                          _mm256_sad_epu8(_mm256_loadu_si256((const __m256i*)(p + i + 64)), zero));
    a3 = _mm256_add_epi64(a3,
                          _mm256_sad_epu8(_mm256_loadu_si256((const __m256i*)(p + i + 96)), zero));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) std::uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  std::uint64_t total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) total += p[i];
  return total;
}

std::uint64_t sum_u8_portable(const std::uint8_t* p, std::size_t n) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) total += p[i];
  return total;
}

bool have_avx2() { return __builtin_cpu_supports("avx2"); }

std::uint64_t sum_u8(const std::uint8_t* p, std::size_t n) {
  static const bool avx2 = have_avx2();
  return avx2 ? sum_u8_avx2(p, n) : sum_u8_portable(p, n);
}

// Best wall time over `repeat` passes of `threads` threads summing equal contiguous shares of
// [p, p + n). Threads start together at a barrier and time themselves, so a pass lasts from
// the first thread's start to the last one's end, whatever the scheduler does to this thread.
double best_scan_seconds(const std::uint8_t* p, std::size_t n, int threads, int repeat,
                         std::uint64_t* checksum) {
  double best = 1e300;
  const auto count = static_cast<std::size_t>(threads);
  std::vector<std::uint64_t> sums(count);
  std::vector<Clock::time_point> begins(count), ends(count);
  for (int r = 0; r < repeat; ++r) {
    std::barrier start(threads);
    std::vector<std::thread> pool;
    const std::size_t share = (n / count + 4095) & ~std::size_t{4095};
    for (std::size_t t = 0; t < count; ++t) {
      pool.emplace_back([&, t] {
        const std::size_t b = std::min(n, share * t);
        const std::size_t e = std::min(n, b + share);
        start.arrive_and_wait();
        begins[t] = Clock::now();
        sums[t] = sum_u8(p + b, e - b);
        ends[t] = Clock::now();
      });
    }
    for (auto& th : pool) th.join();
    const auto first = *std::min_element(begins.begin(), begins.end());
    const auto last = *std::max_element(ends.begin(), ends.end());
    best = std::min(best, std::chrono::duration<double>(last - first).count());
  }
  *checksum = 0;
  for (auto s : sums) *checksum += s;
  return best;
}

void emit(const char* name, int threads, std::uint64_t bytes, double seconds,
          const std::string& extra = "") {
  std::printf(
      "{\"name\": \"%s\", \"threads\": %d, \"bytes\": %llu, \"seconds\": %.6f, \"gbps\": %.3f%s}\n",
      name, threads, static_cast<unsigned long long>(bytes), seconds,
      static_cast<double>(bytes) / seconds / 1e9, extra.c_str());
  std::fflush(stdout);
}

void emit_unmeasured(const char* name, const std::string& reason) {
  std::printf("{\"name\": \"%s\", \"measured\": false, \"reason\": \"%s\"}\n", name,
              reason.c_str());
  std::fflush(stdout);
}

std::vector<int> thread_counts() {
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> counts{1};
  if (all > 1) counts.push_back(all);
  return counts;
}

void probe_anon(std::size_t bytes, int repeat) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap anonymous");
  Mapping map(p, bytes);
  // Prefault with distinct values so no page is the shared zero page.
  for (std::size_t i = 0; i < bytes; i += 64) map.data()[i] = static_cast<std::uint8_t>(i >> 6);
  for (int threads : thread_counts()) {
    std::uint64_t checksum = 0;
    const double s = best_scan_seconds(map.data(), bytes, threads, repeat, &checksum);
    emit("mem_anon", threads, bytes, s, ", \"checksum\": " + std::to_string(checksum));
  }
}

// Writes `bytes` of pseudo-random data to `path` with large write() calls: page-cache pages
// made by write() come in large folios, which map far faster than pages dirtied through mmap.
void write_file(const std::string& path, std::size_t bytes) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) die("open " + path);
  std::vector<std::uint8_t> buf(kIoChunk);
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& b : buf) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<std::uint8_t>(x);
  }
  for (std::size_t done = 0; done < bytes;) {
    const std::size_t n = std::min(kIoChunk, bytes - done);
    const ssize_t w = ::write(fd.get(), buf.data(), n);
    if (w <= 0) die("write " + path);
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd.get()) != 0) die("fsync " + path);
}

// Reads the whole file with read(); returns bytes read.
std::uint64_t read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) die("open " + path);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<std::uint8_t> buf(kIoChunk);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t r = ::read(fd.get(), buf.data(), buf.size());
    if (r < 0) die("read " + path);
    if (r == 0) break;
    total += static_cast<std::uint64_t>(r);
  }
  return total;
}

void probe_file(const std::string& path, int repeat) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) die("open " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) die("stat " + path);
  const auto bytes = static_cast<std::size_t>(st.st_size);
  read_file(path);  // make sure it is in the page cache
  for (int threads : thread_counts()) {
    // A fresh mapping per thread count, populated once outside the timing.
    void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) die("mmap " + path);
    Mapping map(p, bytes);
    const auto t0 = Clock::now();
    const bool populated = ::madvise(p, bytes, MADV_POPULATE_READ) == 0;
    const double populate_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!populated) {  // kernels before 5.14: touch every page
      volatile std::uint8_t sink = 0;
      for (std::size_t i = 0; i < bytes; i += 4096) sink = sink + map.data()[i];
    }
    std::uint64_t checksum = 0;
    const double s = best_scan_seconds(map.data(), bytes, threads, repeat, &checksum);
    emit("mem_file", threads, bytes, s,
         ", \"populate_seconds\": " + std::to_string(populated ? populate_s : -1.0) +
             ", \"checksum\": " + std::to_string(checksum));
  }
}

// Drops the page cache (root only). Returns an empty string on success, else the reason.
std::string drop_caches() {
  ::sync();
  const int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open /proc/sys/vm/drop_caches: ") + std::strerror(errno);
  Fd guard(fd);
  if (::write(fd, "3", 1) != 1) return std::string("drop_caches: ") + std::strerror(errno);
  return "";
}

// How a cold scan through a mapping is fed from disk, single thread, chunks of kTask bytes
// (mmcompute's task size): Fault lets the page-fault readahead work alone; Populate calls
// MADV_POPULATE_READ on each chunk before summing it (what a task does today); Willneed also
// starts reading kAhead chunks in front with MADV_WILLNEED, so the disk never waits for the sum;
// SequentialPopulate is Populate on a mapping advised MADV_SEQUENTIAL.
enum class ColdScan { Fault, Populate, SequentialPopulate, Willneed };

double cold_mapped_scan(const std::string& path, ColdScan how, std::uint64_t* bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) die("open " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) die("stat " + path);
  const auto n = static_cast<std::size_t>(st.st_size);
  constexpr std::size_t kTask = std::size_t{8} << 20;
  constexpr std::size_t kAhead = 4;
  const auto t0 = Clock::now();
  void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) die("mmap " + path);
  Mapping map(p, n);
  if (how == ColdScan::SequentialPopulate) ::madvise(p, n, MADV_SEQUENTIAL);
  std::uint64_t checksum = 0;
  for (std::size_t off = 0; off < n; off += kTask) {
    const std::size_t len = std::min(kTask, n - off);
    if (how == ColdScan::Willneed) {
      if (off == 0) ::madvise(map.data(), std::min(n, kAhead * kTask), MADV_WILLNEED);
      const std::size_t ahead = off + kAhead * kTask;
      if (ahead < n) ::madvise(map.data() + ahead, std::min(kTask, n - ahead), MADV_WILLNEED);
    }
    if (how != ColdScan::Fault) ::madvise(map.data() + off, len, MADV_POPULATE_READ);
    checksum += sum_u8(map.data() + off, len);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  *bytes = n;
  if (checksum == 42) std::fprintf(stderr, " ");  // keeps the sum alive
  return s;
}

void probe_disk(const std::string& path) {
  std::string why = drop_caches();
  if (!why.empty()) {
    emit_unmeasured("disk_cold", "not measured: " + why);
    return;
  }
  // The disk is shared (a virtual disk here): best of two cold reads.
  double best = 1e300;
  std::uint64_t bytes = 0;
  for (int r = 0; r < 2 && why.empty(); ++r) {
    const auto t0 = Clock::now();
    bytes = read_file(path);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    why = drop_caches();
  }
  emit("disk_cold", 1, bytes, best);
  // Cold scans through a mapping: what a reduction can get from the disk, by feeding policy.
  const std::pair<const char*, ColdScan> scans[] = {
      {"disk_cold_mmap_fault", ColdScan::Fault},
      {"disk_cold_mmap_populate8M", ColdScan::Populate},
      {"disk_cold_mmap_sequential_populate8M", ColdScan::SequentialPopulate},
      {"disk_cold_mmap_willneed", ColdScan::Willneed}};
  for (auto [name, how] : scans) {
    if (!why.empty()) break;
    std::uint64_t n = 0;
    const double t = cold_mapped_scan(path, how, &n);
    emit(name, 1, n, t);
    why = drop_caches();
  }
  // Leave the file warm, in the large folios read() makes, for whoever runs next.
  read_file(path);
}

void usage() {
  std::fprintf(stderr,
               "usage: mmc_roofline [--file PATH] [--dir DIR] [--bytes N] [--repeat N] "
               "[--no-disk]\n"
               "  --file PATH  probe this existing file (e.g. the cube compare.py reduces)\n"
               "  --dir DIR    else write a temporary file of --bytes here (default /var/tmp)\n"
               "  --bytes N    buffer and file size, bytes (default 2 GiB; suffixes K M G)\n"
               "  --no-disk    skip the cold read (it drops the whole page cache)\n");
}

std::size_t parse_bytes(const char* text) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  double scale = 1;
  if (*end == 'K' || *end == 'k') scale = 1024.0;
  if (*end == 'M' || *end == 'm') scale = 1024.0 * 1024;
  if (*end == 'G' || *end == 'g') scale = 1024.0 * 1024 * 1024;
  if (v <= 0) {
    usage();
    std::exit(2);
  }
  return static_cast<std::size_t>(v * scale) & ~std::size_t{4095};
}

}  // namespace

int main(int argc, char** argv) {
  std::string file, dir = "/var/tmp";
  std::size_t bytes = std::size_t{2} << 30;
  int repeat = 5;
  bool disk = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--file" && has_value) {
      file = argv[++i];
    } else if (a == "--dir" && has_value) {
      dir = argv[++i];
    } else if (a == "--bytes" && has_value) {
      bytes = parse_bytes(argv[++i]);
    } else if (a == "--repeat" && has_value) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--no-disk") {
      disk = false;
    } else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  std::printf("{\"name\": \"machine\", \"cpus\": %u, \"avx2\": %s}\n",
              std::thread::hardware_concurrency(), have_avx2() ? "true" : "false");
  probe_anon(bytes, repeat);

  std::string temp;
  if (file.empty()) {
    temp = dir + "/mmc_roofline." + std::to_string(::getpid());
    write_file(temp, bytes);
    file = temp;
  }
  probe_file(file, repeat);
  if (disk) {
    probe_disk(file);
  } else {
    emit_unmeasured("disk_cold", "not measured: --no-disk");
  }
  if (!temp.empty()) ::unlink(temp.c_str());
  return 0;
}
