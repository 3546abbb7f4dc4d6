// What the reduction executor needs for one call, and the entry point per element type; the
// templates behind it are in execute.hpp, instantiated once per type in by_type/*.cpp.
#pragma once

#include <string>

#include "mmc/reduce.hpp"
#include "reduce/plan.hpp"

namespace mmc::detail {

struct Context {
  const Source& source;
  const ReducePlan& plan;
  const ReduceOptions& options;
  ReduceResult& result;
  int delay_ms;
  bool swap;  // stored in the other byte order
};

// "%.17g" of v, for messages.
std::string format_value(double v);

// Runs ctx.plan for element type T (the source's dtype) and writes ctx.result.
template <class T>
void execute_for_type(Context& ctx);

}  // namespace mmc::detail
