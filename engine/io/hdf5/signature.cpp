// The one HDF5 sniffer: the format signature looked for with pread at offset 0 and after a
// userblock (512, 1024, 2048, ...), as libhdf5 looks for it, without starting libhdf5.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "io/open_read_only.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/hdf5.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {

bool is_hdf5_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  const detail::UniqueFd fd = detail::open_read_only(path);
  if (::fstat(fd.get(), &st) != 0) throw_errno(path + ": cannot stat");
  static constexpr char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  const auto size = static_cast<std::uint64_t>(st.st_size);
  // A userblock is 0 or a power of two from 512 on; the doubling ends well before overflow.
  for (std::uint64_t at = 0; at <= size && size - at >= sizeof kSignature;
       at = at == 0 ? 512 : at * 2) {
    char head[sizeof kSignature];
    const ssize_t got = detail::pread_full(fd.get(), head, sizeof head, at);
    if (got < 0) throw_errno(path + ": cannot read");
    if (static_cast<std::size_t>(got) == sizeof head &&
        std::memcmp(head, kSignature, sizeof head) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace mmc
