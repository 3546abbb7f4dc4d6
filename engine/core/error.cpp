// mmc::Error helpers.
#include "mmc/error.hpp"

#include <cerrno>
#include <cstring>

namespace mmc {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidArgument:
      return "InvalidArgument";
    case ErrorCode::NotFound:
      return "NotFound";
    case ErrorCode::Corrupt:
      return "Corrupt";
    case ErrorCode::Io:
      return "Io";
    case ErrorCode::WorkerLost:
      return "WorkerLost";
    case ErrorCode::Timeout:
      return "Timeout";
    case ErrorCode::Cancelled:
      return "Cancelled";
    case ErrorCode::TaskFailed:
      return "TaskFailed";
    case ErrorCode::Internal:
      return "Internal";
  }
  return "Unknown";
}

void throw_error(ErrorCode code, const std::string& message) { throw Error(code, message); }

void throw_errno(const std::string& what) {
  const int err = errno;
  const ErrorCode code = (err == ENOENT || err == ENOTDIR) ? ErrorCode::NotFound : ErrorCode::Io;
  throw Error(code, what + ": " + std::strerror(err));
}

}  // namespace mmc
