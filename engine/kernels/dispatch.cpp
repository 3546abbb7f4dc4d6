// Run-time choice of the dense-run kernel variant (see dispatch.hpp).
#include "kernels/dispatch.hpp"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace mmc::kernels {

namespace portable {
const KernelTable& table() noexcept;
}
#if MMC_KERNELS_X86
namespace avx2 {
const KernelTable& table() noexcept;
}
namespace avx512 {
const KernelTable& table() noexcept;
}
#endif

namespace {

bool cpu_runs(Isa isa) noexcept {
#if MMC_KERNELS_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  switch (isa) {
    case Isa::Portable:
      return true;
    case Isa::Avx2:
      return avx2;
    case Isa::Avx512:
      // libgcc also checks that the OS saves the AVX-512 registers (XCR0).
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  }
  return false;
#else
  return isa == Isa::Portable;
#endif
}

const KernelTable* compiled(Isa isa) noexcept {
  switch (isa) {
    case Isa::Portable:
      return &portable::table();
#if MMC_KERNELS_X86
    case Isa::Avx2:
      return &avx2::table();
    case Isa::Avx512:
      return &avx512::table();
#else
    default:
      break;
#endif
  }
  return nullptr;
}

// The highest variant this CPU runs, at most the one MMC_ISA names.
const KernelTable& choose() noexcept {
  Isa cap = Isa::Avx512;
  if (const char* env = std::getenv("MMC_ISA")) {
    for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
      if (std::strcmp(env, to_string(isa)) == 0) cap = isa;
    }
  }
  for (Isa isa : {Isa::Avx512, Isa::Avx2}) {
    if (isa <= cap) {
      if (const KernelTable* t = kernels_for(isa)) return *t;
    }
  }
  return portable::table();
}

}  // namespace

const char* to_string(Isa isa) noexcept {
  switch (isa) {
    case Isa::Portable:
      return "portable";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "?";
}

const KernelTable* kernels_for(Isa isa) noexcept { return cpu_runs(isa) ? compiled(isa) : nullptr; }

const KernelTable& active_kernels() noexcept {
  static const KernelTable& table = choose();
  return table;
}

}  // namespace mmc::kernels
