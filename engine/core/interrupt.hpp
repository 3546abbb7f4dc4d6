// The interrupt self-pipe as the backends see it.
#pragma once

namespace mmc::detail {

// Read end of the self-pipe written by the SIGINT/SIGTERM handler, or -1 before
// install_interrupt_handlers(). Readable once an interrupt arrived (never drained, so every
// poll afterwards sees it too).
int interrupt_fd() noexcept;

// Throws Error(Cancelled, "interrupted by SIGINT") when interrupted() is true.
void throw_if_interrupted();

}  // namespace mmc::detail
