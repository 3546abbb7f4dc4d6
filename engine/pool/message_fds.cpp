// MessageFds: the descriptors a pool message carries beside its bytes, owned and closed once.
#include <fcntl.h>

#include <vector>

#include "mmc/parallel.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

struct MessageFds::Owned {
  std::vector<UniqueFd> fds;
  std::vector<int> sources;  // per entry, the descriptor add_copy copied (-1: adopted)
};

std::uint64_t MessageFds::add_copy(int fd) {
  // A batch of many items naming one segment carries its descriptor once. The source stays
  // open while the message is encoded, so its number names the same file throughout.
  if (owned_) {
    for (std::size_t i = 0; i < owned_->sources.size(); ++i) {
      if (owned_->sources[i] == fd) return i;
    }
  }
  UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) raise_errno("duplicating descriptor " + std::to_string(fd) + " for a worker");
  if (!owned_) owned_ = std::make_shared<Owned>();
  owned_->sources.push_back(fd);
  owned_->fds.push_back(std::move(copy));
  return owned_->fds.size() - 1;
}

void MessageFds::adopt(int fd) {
  UniqueFd owned(fd);
  if (!owned_) owned_ = std::make_shared<Owned>();
  owned_->sources.push_back(-1);
  owned_->fds.push_back(std::move(owned));
}

int MessageFds::at(std::uint64_t index) const {
  if (!owned_ || index >= owned_->fds.size()) {
    raise(ErrorCode::Corrupt, "codec: a value names descriptor " + std::to_string(index) +
                                  " of its message, which carried " + std::to_string(size()));
  }
  return owned_->fds[index].get();
}

std::size_t MessageFds::size() const noexcept { return owned_ ? owned_->fds.size() : 0; }

}  // namespace mmc::detail
