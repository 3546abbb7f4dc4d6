// The dense-run kernels compiled for AVX2 (Haswell and later, Zen).
#define MMC_KERNEL_ISA avx2
#define MMC_KERNEL_ISA_ENUM Avx2
#define MMC_KERNEL_VECTOR_BYTES 32
#include "kernels/dense_kernels.inl"
