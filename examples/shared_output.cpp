// Shared output: workers write their results straight into a SharedArray (nothing crosses a
// pipe) and bump a locked SharedValue counter; the input is a file-backed array passed by
// reference (path + offset), never copied.
#include <cstdio>
#include <fstream>
#include <numeric>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"
#include "mmc/shared.hpp"
#include "mmc/source.hpp"

int main() {
  // A 100 x 1000 float32 cube on disk.
  const std::string path = "shared_output_example.raw";
  {
    std::vector<float> values(100 * 1000);
    std::iota(values.begin(), values.end(), 0.0f);
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }
  mmc::RawSpec spec;
  spec.path = path;
  spec.dtype = mmc::DType::parse("<f4");
  spec.shape = {100, 1000};
  const mmc::Source cube = mmc::open_raw(spec);

  mmc::ParallelOptions options;
  options.n_jobs = 2;
  mmc::Pool pool(options);
  mmc::SharedArray<double> means(100);  // one result per image
  mmc::SharedValue<int> images_done(0);

  std::vector<std::tuple<mmc::ArrayRef<float>, mmc::ArrayRef<double>, mmc::ArrayRef<int>, int>>
      args;
  for (int image = 0; image < 100; ++image) {
    args.emplace_back(mmc::ArrayRef<float>::of(cube), means.ref(), images_done.ref(), image);
  }
  pool.starmap(
      [](mmc::ArrayRef<float> in, mmc::ArrayRef<double> out, mmc::ArrayRef<int> done, int image) {
        double sum = 0;
        for (int i = 0; i < 1000; ++i) sum += in[static_cast<std::size_t>(image) * 1000 + i];
        out[static_cast<std::size_t>(image)] = sum / 1000;  // written in place, shared
        mmc::with_lock(done, [](int& n) { ++n; });
      },
      args);
  std::remove(path.c_str());
  std::printf("images done: %d, mean of image 99: %.1f\n", images_done.load(), means[99]);
  return images_done.load() == 100 && means[99] == 99'499.5 ? 0 : 1;
}
