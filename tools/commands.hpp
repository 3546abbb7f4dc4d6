// The CLI's subcommands: each takes its parsed arguments, calls the library and prints.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <string>

#include "mmc/cache.hpp"
#include "mmc/open.hpp"
#include "mmc/reduce.hpp"

namespace mmc::cli {

// How a SOURCE argument is read: a .npy file, an HDF5 dataset (FILE:/path), a zarr v2 store,
// or raw bytes described by dtype and shape.
struct SourceArgs {
  std::string path;
  std::string dtype;        // raw only
  std::string shape;        // raw only
  std::int64_t offset = 0;  // signed, so that --offset -5 gets its own message
  std::string order = "C";
  bool raw = false;  // set when any raw option was given
};

// Shared by reduce and gen.
struct OutputArgs {
  bool progress = false;
  bool quiet = false;
  bool verbose = false;
};

struct ReduceArgs {
  SourceArgs source;
  std::string op;
  std::string axis;  // empty: the library's default (every axis but 0)
  int ddof = 0;
  std::int64_t bins = 10;  // histogram only
  bool bins_given = false;
  std::string range;   // histogram only: "LO,HI"; empty: the data's min and max
  std::string q;       // percentile only: "5,50,95"
  std::string select;  // numpy's basic slicing per axis: "2:20:3,5:30,:"; empty: everything
  std::string nodata;  // elements equal to it are left out (when nodata_given)
  bool nodata_given = false;
  std::string mask;  // a bool .npy broadcastable against the source; true leaves out
  bool mask_given = false;
  int jobs = -1;  // the default when neither --jobs nor MMC_N_JOBS is given: all CPUs
  bool jobs_given = false;
  std::string backend = "process";
  std::string max_nbytes = "1M";
  std::string out;  // empty: text on stdout
  OutputArgs output;
};

// The cache options of `reduce`.
struct CacheArgs {
  std::string folder;     // --cache DIR; empty: $MMC_CACHE_DIR
  bool verify = false;    // --cache-verify
  bool disabled = false;  // --no-cache (ignores MMC_CACHE_DIR)
};

struct InfoArgs {
  SourceArgs source;
  bool json = false;
};

struct GenArgs {
  std::string out;
  std::string shape;
  std::string dtype = "u8";
  std::uint64_t seed = 0;
  int jobs = -1;  // the default when neither --jobs nor MMC_N_JOBS is given: all CPUs
  bool jobs_given = false;
  std::string backend = "process";
  OutputArgs output;
};

struct ConvertArgs {
  SourceArgs source;
  std::string dst;
  std::string chunks;  // "1,256,1024"; empty: the library's default
  std::string compressor = "none";
  int level = 5;
  int zarr_format = 2;
  std::string shards;  // "64,1024,1024": zarr v3's shard shape; empty: no sharding
  int jobs = -1;       // the default when neither --jobs nor MMC_N_JOBS is given: all CPUs
  bool jobs_given = false;
  std::string backend = "process";
  bool overwrite = false;
  OutputArgs output;
};

// The cache folder from --cache or MMC_CACHE_DIR. Throws Error(InvalidArgument) when neither.
std::string cache_folder(const std::string& folder);

void write_stdout(const std::string& text);

// "1 worker", "2 workers": a count and its noun, in the singular when the count is 1.
std::string counted(long long n, const std::string& noun);

// Each returns the process exit code on success paths and throws mmc::Error otherwise.
// reduce goes through the result cache when --cache is given or MMC_CACHE_DIR is set (and
// not --no-cache): a hit prints the stored answer without starting a worker; -v says
// "cache: hit <key>" or "cache: miss, stored <key>". Cache problems are warnings
// ("mmcompute: warning: cache: ..."), never failures.
// Under mpirun: this process's rank, the ranks' agreement on errors (mmc::mpi::agree) and the
// reduction shared among ranks (mmc::mpi::reduce_each). Default: one process, nothing shared.
struct Cluster {
  int rank = 0;
  int size = 1;
  std::function<void(std::exception_ptr)> agree;
  std::function<std::vector<ReduceResult>(const AnyArray&, const ReduceOptions&)> reduce;
};

// Under MPI (cluster.reduce set) every rank opens the source and runs its share of the tasks;
// only rank 0 prints, shows progress and writes the output; the cache is not used.
int run_reduce(const ReduceArgs& args, const CacheArgs& cache = {}, const Cluster& cluster = {});
int run_info(const InfoArgs& args);
int run_gen(const GenArgs& args);
int run_convert(const ConvertArgs& args);

}  // namespace mmc::cli
