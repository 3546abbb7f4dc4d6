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

}  // namespace mmc
