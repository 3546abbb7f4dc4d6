// mpi_reduce: a per-image mean, variance and custom statistic over MPI_COMM_WORLD, each rank
// running its share of the tasks with 1 worker; checked bitwise against the same calls made in
// one process. Run: mpirun -n 3 ./mmc_example_mpi_reduce
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "mmc/generate.hpp"
#include "mmc/mmc.hpp"
#include "mmc/mpi.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Rank 0 writes the cube (f32, 48 images of 256 x 256) where every rank can read it.
  std::string path = "/tmp/mmc_mpi_example_" + std::to_string(::getppid()) + ".npy";
  if (rank == 0) {
    mmc::PoolOptions pool;
    pool.n_jobs = 1;
    mmc::generate_cube(path, mmc::DType(mmc::TypeId::F32), {48, 256, 256}, 11, pool);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  const mmc::AnyArray cube = mmc::open_array(path);
  int failures = 0;
  for (mmc::ReduceOp op : {mmc::ReduceOp::Mean, mmc::ReduceOp::Var, mmc::ReduceOp::ArgMax}) {
    mmc::ReduceOptions options;
    options.op = op;
    options.pool.n_jobs = 1;
    options.task_bytes = 1 << 18;  // 24 tasks to share
    const mmc::ReduceResult shared = mmc::mpi::reduce(MPI_COMM_WORLD, cube, options);
    const mmc::ReduceResult alone = mmc::reduce(cube, options);
    if (shared.data.size() != alone.data.size() ||
        std::memcmp(shared.data.data(), alone.data.data(), alone.data.size()) != 0) {
      std::printf("rank %d: %s differs from the single-process result\n", rank, mmc::to_string(op));
      ++failures;
    }
  }
  mmc::SliceOptions slice_options;
  slice_options.pool.n_jobs = 1;
  slice_options.task_bytes = 1 << 18;
  auto peak = [](const mmc::SliceView<float>& s) {
    float m = s.data[0];
    for (std::int64_t i = 1; i < s.size(); ++i) m = s.data[i] > m ? s.data[i] : m;
    return m;
  };
  const auto shared = mmc::mpi::map_slices<float, float>(MPI_COMM_WORLD, cube, peak, slice_options);
  const auto alone = mmc::map_slices<float, float>(cube, peak, slice_options);
  if (shared != alone) {
    std::printf("rank %d: map_slices differs from the single-process result\n", rank);
    ++failures;
  }
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("%d ranks: mean, var, argmax and a custom kernel equal to one process: %s\n", size,
                total == 0 ? "yes" : "NO");
    std::filesystem::remove(path);
  }
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
