// The dense-run kernels compiled for AVX-512 F/BW/DQ/VL (Skylake-SP and later, Zen 4).
#define MMC_KERNEL_ISA avx512
#define MMC_KERNEL_ISA_ENUM Avx512
#define MMC_KERNEL_VECTOR_BYTES 64
#include "kernels/dense_kernels.inl"
