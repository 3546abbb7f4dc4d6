// Fuzz target: the parsers of command-line values and of the cgroup files the pool reads.
// Layout: 1 byte choosing the parser, then the text. Parsers must return or throw mmc::Error;
// values they accept are checked to be sane where a wrong one would go unnoticed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mmc/array.hpp"
#include "mmc/chunked.hpp"
#include "mmc/convert.hpp"
#include "mmc/dtype.hpp"
#include "mmc/error.hpp"
#include "mmc/hdf5.hpp"
#include "mmc/mapped_file.hpp"
#include "mmc/pool.hpp"
#include "mmc/reduce.hpp"
#include "mmc/zarr.hpp"
#include "pool/options.hpp"

namespace {

// Aborts (a finding) when an accepted value breaks what every caller relies on.
void require(bool ok) {
  if (!ok) std::abort();
}

void parse_one(int which, const std::string& text) {
  switch (which) {
    case 0: {
      const mmc::DType t = mmc::DType::parse(text);
      require(t.itemsize() >= 1);
      break;
    }
    case 1:
      (void)mmc::DType::from_numpy_descr(text);
      break;
    case 2:
      for (std::int64_t e : mmc::parse_shape(text)) require(e >= 0);
      break;
    case 3:
      (void)mmc::parse_axes(text);
      break;
    case 4:
      (void)mmc::parse_max_nbytes(text);
      break;
    case 5:
      (void)mmc::parse_backend(text);
      break;
    case 6:
      (void)mmc::parse_reduce_op(text);
      break;
    case 7:
      (void)mmc::parse_compressor(text);
      break;
    case 8:
      (void)mmc::parse_map_mode(text);
      break;
    case 9: {
      std::string file, dataset;
      if (mmc::split_hdf5_spec(text, &file, &dataset)) require(!dataset.empty());
      (void)mmc::format_of_destination(text);
      break;
    }
    case 10: {
      const auto cpus = mmc::detail::cpus_from_cgroup_v2(text);
      require(!cpus || *cpus >= 1);
      break;
    }
    case 11: {
      const std::size_t nl = text.find('\n');
      const auto cpus = mmc::detail::cpus_from_cgroup_v1(
          text.substr(0, nl), nl == std::string::npos ? "" : text.substr(nl + 1));
      require(!cpus || *cpus >= 1);
      break;
    }
    case 12: {
      const std::size_t nl = text.find('\n');
      const std::string limit = text.substr(0, nl);
      const std::string stat = nl == std::string::npos ? "" : text.substr(nl + 1);
      (void)mmc::detail::cgroup_memory_from(limit, stat, false);
      (void)mmc::detail::cgroup_memory_from(limit, stat, true);
      break;
    }
    default: {
      int n_jobs = 0;
      std::memcpy(&n_jobs, text.data(), std::min(text.size(), sizeof n_jobs));
      require(mmc::effective_n_jobs(n_jobs) >= 1);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    parse_one(data[0] % 14, text);
  } catch (const mmc::Error&) {
    // Refused with a message: the expected outcome for most inputs.
  }
  return 0;
}
