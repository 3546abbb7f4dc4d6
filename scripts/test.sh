#!/usr/bin/env bash
# The whole test suite: a Release build in build/, an ASan+UBSan build in build-asan/, then
# the threaded tests in a ThreadSanitizer build in build-tsan/, then short libFuzzer runs
# (build-fuzz/, clang-14).
# Installs missing packages first. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

mmc_install_deps
# Benchmarks are built (and smoke-tested) in the Release build so they cannot rot.
mmc_build build -DCMAKE_BUILD_TYPE=Release -DMMC_BUILD_BENCHMARKS=ON
ctest --test-dir build --output-on-failure -j2

mmc_build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMC_SANITIZE=ON
ctest --test-dir build-asan --output-on-failure -j2

# ThreadSanitizer over the code that runs threads: the thread backends, mmc::Pool's dispatcher
# (with fork server, cancellation, interrupts) and the cache's key lock. Only those test binaries
# are built and only those tests run, so the step stays a few minutes. Each test runs in its own
# process (ctest), so no test forks from a parent another test left threaded.
MMC_TSAN_TESTS='(^|/)(PoolEveryBackend|PoolErrors|PoolInterrupt|PoolInterruptSigint|PoolMap|PoolWorkers|PoolWorkerLost|EveryBackend|ProcessPool|PoolCancel|PoolCapture|PoolStdio|ParallelDefaults|SharedEveryBackend|SharedArray|Memoize)\.|CachedReduce\.EightConcurrent'
if [ ! -f build-tsan/build.ninja ]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMC_TSAN=ON \
    -DMMC_BUILD_BENCHMARKS=OFF
fi
cmake --build build-tsan --target mmc_pool_tests mmc_parallel_tests mmc_cache_tests
# GCC 12's TSan aborts with "FATAL: ThreadSanitizer: unexpected memory mapping" on kernels that
# randomize mmap more than it expects (vm.mmap_rnd_bits > 28 on x86-64): run without address
# randomization there, when the kernel lets us.
tsan_prefix=()
if [ "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)" -gt 28 ] &&
  setarch "$(uname -m)" -R true 2>/dev/null; then
  tsan_prefix=(setarch "$(uname -m)" -R)
fi
"${tsan_prefix[@]}" ctest --test-dir build-tsan --output-on-failure -j2 -R "$MMC_TSAN_TESTS"

# Fuzz smoke: each libFuzzer target of tests/fuzz for a bounded time (clang-14; see scripts/fuzz.sh).
scripts/fuzz.sh
