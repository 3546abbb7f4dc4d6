// Interrupts: SIGINT/SIGTERM turned into Error(Cancelled) for every running and future call.
#pragma once

namespace mmc {

// Installs SIGINT/SIGTERM handlers that make running and future calls fail with
// Error(Cancelled) instead of killing the process outright. For programs (the CLI), not
// libraries. Idempotent. Throws Error(Io) when the handlers cannot be set up.
void install_interrupt_handlers();
// True once SIGINT or SIGTERM arrived after install_interrupt_handlers(); the signal number
// (0 before). Async-signal-safe and thread-safe.
bool interrupted() noexcept;
int interrupt_signal() noexcept;

// Interrupts for calls made from a host that handles SIGINT itself (the Python module, a GUI):
// while a scope lives, SIGINT/SIGTERM make running calls fail with Error(Cancelled), as after
// install_interrupt_handlers(). The first of overlapping scopes (several threads' calls) forgets
// an earlier interrupt and puts in the handlers; the last one puts back those it found and, if
// a signal came meanwhile, raises it again, so that the host handles it as its own (Python's
// KeyboardInterrupt; SIGTERM's default action ends the process once the workers are gone).
// Changes nothing after install_interrupt_handlers(). Thread-safe; throws Error(Io) when the
// handlers cannot be set.
class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
};

}  // namespace mmc
