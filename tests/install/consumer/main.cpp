// Uses an installed mmcompute: writes a small raw cube, reduces it serially, checks the means,
// and maps on a serial mmc::Pool.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <mmc/mmc.hpp>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  // Slice i holds the values i*10 + 0..15, whose mean is i*10 + 7.5.
  std::vector<std::uint8_t> bytes;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 16; ++j) bytes.push_back(static_cast<std::uint8_t>(i * 10 + j));
  }
  std::ofstream(argv[1], std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));

  try {
    const mmc::Source cube = mmc::open_raw({argv[1], mmc::DType(mmc::TypeId::U8), {3, 4, 4}});
    mmc::ReduceOptions options;
    options.op = mmc::ReduceOp::Mean;
    options.pool.backend = mmc::Backend::Serial;
    const mmc::ReduceResult means = mmc::reduce(cube, options);
    if (means.size() != 3) return 1;
    for (int i = 0; i < 3; ++i) {
      if (means.as<double>()[i] != i * 10 + 7.5) {
        std::fprintf(stderr, "slice %d: mean %g, expected %g\n", i, means.as<double>()[i],
                     i * 10 + 7.5);
        return 1;
      }
    }
    // mmc::Pool's templates reach the installed detail headers.
    mmc::ParallelOptions pool_options;
    pool_options.backend = mmc::Backend::Serial;
    mmc::Pool pool(pool_options);
    const std::vector<int> squares =
        pool.map([](int x) { return x * x; }, std::vector<int>{1, 2, 3});
    if (squares != std::vector<int>{1, 4, 9}) {
      std::fprintf(stderr, "consumer: pool.map gave wrong squares\n");
      return 1;
    }
  } catch (const mmc::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  std::puts("consumer: ok");
  return 0;
}
