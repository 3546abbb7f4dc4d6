// mmcompute's main: the parser and the commands are in cli.cpp and commands.cpp, shared with
// mmcompute-mpi (this file compiled with MMC_WITH_MPI=1), which alone links libmpi.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli.hpp"
#if MMC_WITH_MPI
#include "mmc/mpi.hpp"
#endif

namespace {

#if MMC_WITH_MPI || defined(MMC_MPI_EXECUTABLE)
// True when mpirun (OpenMPI), srun or another PMI launcher started this process: only then is
// MPI initialized (by mmcompute-mpi), so a plain run pays no MPI start-up.
bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}
#endif

#ifdef MMC_MPI_EXECUTABLE
// Runs mmcompute-mpi, built next to this executable and the only one linked with MPI, in place
// of this process with the same arguments. Returns only when it cannot (the error printed).
int exec_mpi_executable(char** argv) {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    mmc::cli::print_error(
        std::string("started by an MPI launcher, but /proc/self/exe cannot be read: ") +
        std::strerror(errno));
    return mmc::cli::kExitRuntime;
  }
  std::string path(self, static_cast<std::size_t>(n));
  path = path.substr(0, path.rfind('/') + 1) + MMC_MPI_EXECUTABLE;
  ::execv(path.c_str(), argv);
  mmc::cli::print_error("started by an MPI launcher, but " + path +
                        " cannot run: " + std::strerror(errno));
  return mmc::cli::kExitRuntime;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  mmc::cli::Cluster cluster;
#if MMC_WITH_MPI
  const bool mpi = launched_by_mpi();
  if (mpi) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &cluster.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &cluster.size);
    cluster.agree = [](std::exception_ptr error) { mmc::mpi::agree(MPI_COMM_WORLD, error); };
    cluster.reduce = [](const mmc::AnyArray& array, const mmc::ReduceOptions& options) {
      return mmc::mpi::reduce_each(MPI_COMM_WORLD, array, options);
    };
  }
#elif defined(MMC_MPI_EXECUTABLE)
  if (launched_by_mpi()) return exec_mpi_executable(argv);
#endif
  const int code = mmc::cli::run_cli(argc, argv, cluster);
#if MMC_WITH_MPI
  if (mpi) MPI_Finalize();
#endif
  return code;
}
