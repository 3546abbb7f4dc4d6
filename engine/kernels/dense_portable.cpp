// The dense-run kernels compiled for the x86-64 baseline (SSE2); the reference that tests compare
// the others with.
#define MMC_KERNEL_ISA portable
#define MMC_KERNEL_ISA_ENUM Portable
#define MMC_KERNEL_VECTOR_BYTES 16
#include "kernels/dense_kernels.inl"
