// The one error type of mmcompute's public API: a code plus a message that says what, where
// and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace mmc {

enum class ErrorCode {
  InvalidArgument,  // the caller asked for something impossible (bad axis, dtype, option)
  NotFound,         // a file, dataset or key does not exist
  Corrupt,          // a file's bytes contradict its own metadata
  Io,               // the operating system refused (open, mmap, read, write, rename)
  WorkerLost,       // a worker process died (signal or unexpected exit)
  Timeout,          // a deadline passed
  Cancelled,        // the caller was interrupted (SIGINT/SIGTERM) or cancelled the call
  TaskFailed,       // user or kernel code threw inside a task
  Internal,         // a bug in mmcompute
};

// Short stable name of a code ("InvalidArgument", ...), for messages and serialization.
const char* to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Throws Error(code, message). Out of line so call sites stay small.
[[noreturn]] void throw_error(ErrorCode code, const std::string& message);

// Throws Error(Io, "<what>: <strerror(errno)>") using the current errno.
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace mmc
