// MessageFds: the descriptors a pool message carries beside its bytes, owned and closed once.
#include <fcntl.h>
#include <sys/stat.h>

#include <utility>
#include <vector>

#include "mmc/codec.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

struct MessageFds::Owned {
  std::vector<UniqueFd> fds;
  std::vector<std::pair<dev_t, ino_t>> files;  // per entry added by add_copy: its identity
};

std::uint64_t MessageFds::add_copy(int fd) {
  // A batch of many items naming one segment carries its descriptor once. Files are told apart
  // by device and inode (numbers are reused once closed; an inode is not while our copy holds
  // its file open).
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    throw_errno("descriptor " + std::to_string(fd) + " of an ArrayRef (is its SharedArray gone?)");
  }
  const std::pair<dev_t, ino_t> file{info.st_dev, info.st_ino};
  if (owned_) {
    for (std::size_t i = 0; i < owned_->files.size(); ++i) {
      if (owned_->files[i] == file) return i;
    }
  }
  UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) throw_errno("duplicating descriptor " + std::to_string(fd) + " for a worker");
  if (!owned_) owned_ = std::make_shared<Owned>();
  owned_->fds.push_back(std::move(copy));
  owned_->files.push_back(file);
  return owned_->fds.size() - 1;
}

void MessageFds::adopt(int fd) {
  UniqueFd owned(fd);
  if (!owned_) owned_ = std::make_shared<Owned>();
  owned_->fds.push_back(std::move(owned));
  owned_->files.emplace_back(0, 0);  // received: never matched by add_copy
}

int MessageFds::at(std::uint64_t index) const {
  if (!owned_ || index >= owned_->fds.size()) {
    throw_error(ErrorCode::Corrupt, "codec: a value names descriptor " + std::to_string(index) +
                                        " of its message, which carried " + std::to_string(size()));
  }
  return owned_->fds[index].get();
}

std::size_t MessageFds::size() const noexcept { return owned_ ? owned_->fds.size() : 0; }

}  // namespace mmc::detail
