// run_executor: the element type's executor (by_type/), among those this build holds.
// MMC_REDUCE_TYPE_MASK (engine/reduce/CMakeLists.txt) has bit TypeId set for each type whose
// by_type file is compiled: every type, but in the ThreadSanitizer test build (MMC_REDUCE_TYPES),
// whose threaded tests reduce u8 arrays only.
#include <string>

#include "mmc/error.hpp"
#include "reduce/context.hpp"

#ifndef MMC_REDUCE_TYPE_MASK
#define MMC_REDUCE_TYPE_MASK 0x7ff
#endif

namespace mmc::detail {

void run_executor(Context& ctx, TypeId id) {
  visit_type(id, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (((MMC_REDUCE_TYPE_MASK >> static_cast<unsigned>(type_id_of<T>())) & 1u) != 0) {
      execute_for_type<T>(ctx);
    } else {
      throw Error(ErrorCode::InvalidArgument, "this build of mmcompute leaves out reductions of " +
                                                  DType(type_id_of<T>()).name() +
                                                  " (MMC_REDUCE_TYPES)");
    }
  });
}

}  // namespace mmc::detail
