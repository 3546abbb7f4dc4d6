// The synthetic "satellite cube": deterministic images rendered in parallel and written with
// pwrite.
//
// Slice i is smooth terrain (row and column sinusoids plus separable gaussian blobs, with
// parameters drawn from a generator seeded by hash(seed, i)) plus per-pixel noise from a
// counter-based hash of (seed, i, pixel), so every byte is a pure function of (seed, i, pixel)
// and the file does not depend on the pool options. Terrain terms are precomputed per row and
// per column: the per-pixel work is a few adds, one multiply-xorshift hash and a conversion.
#include "mmc/generate.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/output.hpp"
#include "mmc/source.hpp"
#include "os/exact_io.hpp"

namespace mmc {
namespace {

constexpr std::uint64_t kGenerateTaskBytes = std::uint64_t{4}
                                             << 20;  // slices batched to ~4 MiB a task
constexpr int kWaves = 3;                            // sinusoids per axis
constexpr int kBlobs = 2;                            // gaussian blobs per slice
constexpr float kNoise = 0.12f;                      // peak-to-peak noise amplitude
constexpr float kBelowOne = 0.99999994f;             // largest float below 1

std::uint64_t mix64(std::uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// splitmix64: the per-slice parameter stream.
class SplitMix {
 public:
  explicit SplitMix(std::uint64_t state) : state_(state) {}
  std::uint64_t next() { return mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in [lo, hi).
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53;
  }

 private:
  std::uint64_t state_;
};

// Where a slice's pixels sit: `planes` images of rows x cols (the axes between the first and the
// last two are planes; 1-d and 2-d cubes have one row).
struct Geometry {
  std::int64_t planes = 1;
  std::int64_t rows = 1;
  std::int64_t cols = 1;
};

Geometry geometry_of(const Shape& shape) {
  Geometry g;
  const std::size_t n = shape.size();
  if (n >= 2) g.cols = shape[n - 1];
  if (n >= 3) g.rows = shape[n - 2];
  for (std::size_t k = 1; k + 2 < n; ++k) g.planes *= shape[k];
  return g;
}

// A slice's terrain, precomputed along each axis.
struct Terrain {
  float base = 0.5f;
  std::vector<float> row_wave;          // per row: sum of the row sinusoids
  std::vector<float> col_wave;          // per column
  std::vector<float> blob_row[kBlobs];  // per row: height * exp(-dr^2 / 2s^2)
  std::vector<float> blob_col[kBlobs];  // per column: exp(-dc^2 / 2s^2)
};

std::vector<float> waves(SplitMix& rng, std::int64_t n) {
  double amp[kWaves], freq[kWaves], phase[kWaves];
  for (int k = 0; k < kWaves; ++k) {
    amp[k] = rng.uniform(0.02, 0.07);
    freq[k] = 2 * std::numbers::pi * rng.uniform(0.5, 6.0) / static_cast<double>(n);
    phase[k] = rng.uniform(0, 2 * std::numbers::pi);
  }
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::int64_t x = 0; x < n; ++x) {
    double s = 0;
    for (int k = 0; k < kWaves; ++k)
      s += amp[k] * std::sin(freq[k] * static_cast<double>(x) + phase[k]);
    out[static_cast<std::size_t>(x)] = static_cast<float>(s);
  }
  return out;
}

std::vector<float> gaussian(double centre, double sigma, double height, std::int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::int64_t x = 0; x < n; ++x) {
    const double d = (static_cast<double>(x) - centre) / sigma;
    out[static_cast<std::size_t>(x)] = static_cast<float>(height * std::exp(-0.5 * d * d));
  }
  return out;
}

Terrain make_terrain(std::uint64_t key, const Geometry& g) {
  SplitMix rng(key);
  Terrain t;
  t.base = static_cast<float>(rng.uniform(0.3, 0.7));
  t.row_wave = waves(rng, g.rows);
  t.col_wave = waves(rng, g.cols);
  const double extent = static_cast<double>(std::min(g.rows, g.cols));
  for (int j = 0; j < kBlobs; ++j) {
    const double sigma = rng.uniform(0.05, 0.3) * extent + 1;
    const double height = rng.uniform(-0.2, 0.2);
    t.blob_row[j] = gaussian(rng.uniform(0, static_cast<double>(g.rows)), sigma, height, g.rows);
    t.blob_col[j] = gaussian(rng.uniform(0, static_cast<double>(g.cols)), sigma, 1.0, g.cols);
  }
  return t;
}

// One row of values in [0, 1). The hot loop: cloned for AVX2 so it vectorizes 8 pixels wide
// (32-bit multiplies) where the CPU has it, chosen at load time.
__attribute__((target_clones("avx2", "default"))) void terrain_row(
    float row_const, float blob0, float blob1, const float* col_wave, const float* col_blob0,
    const float* col_blob1, std::uint32_t row_key, std::int64_t cols, float* out) {
  for (std::int64_t c = 0; c < cols; ++c) {
    std::uint32_t h = row_key + static_cast<std::uint32_t>(c) * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    const float noise = (static_cast<float>(h >> 8) * 0x1.0p-24f - 0.5f) * kNoise;
    float v = row_const + col_wave[c] + blob0 * col_blob0[c] + blob1 * col_blob1[c] + noise;
    v = v < 0.0f ? 0.0f : v;
    out[c] = v > kBelowOne ? kBelowOne : v;
  }
}

template <class T>
T byteswap(T v) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  std::reverse(b, b + sizeof(T));
  std::memcpy(&v, b, sizeof(T));
  return v;
}

// Scales [0, 1) into T's range: unsigned 0..max, signed centred on 0, floats unchanged
// (float16 rounded to nearest even, as numpy's astype(float16) of the float32 cube).
template <class T>
void store_row(const float* v, std::int64_t n, bool swap, T* out) {
  for (std::int64_t c = 0; c < n; ++c) {
    T x;
    if constexpr (std::is_same_v<T, Float16>) {
      x = Float16::from(v[c]);
    } else if constexpr (std::is_same_v<T, bool>) {
      x = v[c] >= 0.5f;
    } else if constexpr (std::is_floating_point_v<T>) {
      x = static_cast<T>(v[c]);
    } else if constexpr (sizeof(T) <= 2) {
      constexpr float kScale = static_cast<float>(1u << (8 * sizeof(T)));
      x = static_cast<T>(std::is_signed_v<T> ? (v[c] - 0.5f) * kScale : v[c] * kScale);
    } else {
      const double scale = std::ldexp(1.0, 8 * static_cast<int>(sizeof(T)));
      const double d = static_cast<double>(v[c]);
      x = static_cast<T>(std::is_signed_v<T> ? (d - 0.5) * scale : d * scale);
    }
    out[c] = x;
  }
  if constexpr (sizeof(T) > 1) {
    if (swap) {
      for (std::int64_t c = 0; c < n; ++c) out[c] = byteswap(out[c]);
    }
  }
}

template <class T>
void write_slice(std::uint64_t seed, std::int64_t slice, const Geometry& g, bool swap,
                 std::byte* dst) {
  const std::uint64_t key = mix64(seed ^ mix64(static_cast<std::uint64_t>(slice) + 1));
  const Terrain t = make_terrain(key, g);
  std::vector<float> values(static_cast<std::size_t>(g.cols));
  T* out = reinterpret_cast<T*>(dst);
  for (std::int64_t p = 0; p < g.planes; ++p) {
    const std::uint64_t plane_key = mix64(key ^ (static_cast<std::uint64_t>(p) << 1 | 1));
    const float plane_shift = static_cast<float>((plane_key >> 11) * 0x1.0p-53 - 0.5) * 0.1f;
    for (std::int64_t r = 0; r < g.rows; ++r) {
      const auto ri = static_cast<std::size_t>(r);
      const auto row_key =
          static_cast<std::uint32_t>(mix64(plane_key + static_cast<std::uint64_t>(r)));
      terrain_row(t.base + plane_shift + t.row_wave[ri], t.blob_row[0][ri], t.blob_row[1][ri],
                  t.col_wave.data(), t.blob_col[0].data(), t.blob_col[1].data(), row_key, g.cols,
                  values.data());
      store_row<T>(values.data(), g.cols, swap, out);
      out += g.cols;
    }
  }
}

// Gives the temporary its full size, reserving the blocks where the file system can, so a full
// disk is an error here rather than a SIGBUS in a worker.
void reserve(const AtomicFile& file, std::uint64_t size) {
  const auto len = static_cast<off_t>(size);
  if (::fallocate(file.fd(), 0, 0, len) == 0) return;
  if (errno != EOPNOTSUPP && errno != ENOSYS) {
    throw_errno("cannot reserve " + std::to_string(size) + " bytes for " + file.target());
  }
  if (::ftruncate(file.fd(), len) != 0) throw_errno("cannot resize " + file.temp_path());
}

void write_all_at(int fd, const std::byte* data, std::size_t size, std::uint64_t offset,
                  const std::string& path) {
  if (!detail::pwrite_all(fd, data, size, offset)) throw_errno("cannot write " + path);
}

}  // namespace

void generate_cube(const std::string& path, DType dtype, const Shape& shape, std::uint64_t seed,
                   const PoolOptions& pool, const ProgressCallback& progress) {
  if (shape.empty()) {
    throw Error(ErrorCode::InvalidArgument, "gen: the shape needs at least one axis (slices)");
  }
  const ArrayMeta meta = ArrayMeta::contiguous(dtype, shape, Order::C);  // checks overflow
  const bool npy = path.ends_with(".npy");
  const std::string header = npy ? make_npy_header(dtype, shape, false) : std::string();
  const std::uint64_t data_bytes = meta.nbytes();
  const std::uint64_t slice_bytes =
      shape[0] == 0 ? 0 : data_bytes / static_cast<std::uint64_t>(shape[0]);
  const Geometry g = geometry_of(shape);

  AtomicFile file(path);
  file.write(header.data(), header.size());
  reserve(file, detail::checked_add(header.size(), data_bytes, path.c_str()));
  if (data_bytes > 0) {
    // Each task renders its slices into a private buffer and writes them with one pwrite at
    // their offset (workers inherit the descriptor). Large writes leave the page cache in large
    // folios, which later map many times faster than pages dirtied through a shared mapping.
    const std::int64_t per_task =
        static_cast<std::int64_t>(std::max<std::uint64_t>(1, kGenerateTaskBytes / slice_bytes));
    const std::int64_t slices = shape[0];
    const std::uint64_t data_offset = header.size();
    const int fd = file.fd();
    TaskSet call;
    call.n_tasks = static_cast<std::size_t>((slices + per_task - 1) / per_task);
    const bool swap = !dtype.is_native();
    call.run = [&](std::size_t task, ByteView, Bytes&) {
      const std::int64_t first = static_cast<std::int64_t>(task) * per_task;
      const std::int64_t last = std::min(slices, first + per_task);
      thread_local std::vector<std::byte> buffer;
      buffer.resize(static_cast<std::size_t>(last - first) * slice_bytes);
      const auto render = [&](auto tag) {
        using T = decltype(tag);
        for (std::int64_t i = first; i < last; ++i) {
          write_slice<T>(seed, i, g, swap,
                         buffer.data() + static_cast<std::uint64_t>(i - first) * slice_bytes);
        }
      };
      if (dtype.id() == TypeId::F16) {  // a storage type, which visit_type does not visit
        render(Float16{});
      } else {
        visit_type(dtype.id(), render);
      }
      write_all_at(fd, buffer.data(), buffer.size(),
                   data_offset + static_cast<std::uint64_t>(first) * slice_bytes, path);
    };
    call.on_result = [](std::size_t, ByteView) {};
    call.on_progress = progress;
    run_tasks(pool, call);
  }
  // A sample cube can be made again: no fsync (it dominated the run), but still renamed into
  // place whole.
  file.commit(/*durable=*/false);
}

}  // namespace mmc
