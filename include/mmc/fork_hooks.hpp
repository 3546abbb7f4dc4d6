// Code that must run around each fork of a pool's worker process: an embedding interpreter's
// own fork protocol. The Python module's map_slices sets them so that its forked workers can
// call Python: prepare takes the GIL and runs PyOS_BeforeFork, parent and child run
// PyOS_AfterFork_Parent / PyOS_AfterFork_Child and let the GIL go (python/core.cpp).
#pragma once

#include <functional>

namespace mmc {

struct ForkHooks {
  std::function<void()> prepare;  // in the parent, just before fork()
  std::function<void()> parent;   // in the parent, just after fork(), whether or not it failed
  std::function<void()> child;    // in the child, first thing, before its signal setup
};

}  // namespace mmc
