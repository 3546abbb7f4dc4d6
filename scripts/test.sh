#!/usr/bin/env bash
# The whole test suite: a Release build in build/, an ASan+UBSan build with the libFuzzer
# targets and their short runs in build-asan/ (clang-14), then the threaded tests in a
# ThreadSanitizer build in build-tsan/.
# Installs missing packages first. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

# Wall seconds of each step, printed at the end (CPU seconds: build/.ninja_log, ctest's times).
stages=()
stage_start=$(date +%s)
# stage_done NAME: records the seconds since the previous step ended.
stage_done() {
  local now
  now=$(date +%s)
  stages+=("$1 $((now - stage_start)) s")
  stage_start=$now
}
# A build still running in the background when the script stops (a failure) is stopped too.
stop_background() {
  local pid
  for pid in $(jobs -p); do
    pkill -TERM -P "$pid" 2>/dev/null || true  # ninja or cmake; ninja stops its compilers
    kill "$pid" 2>/dev/null || true
  done
}
trap 'stop_background; printf "test: %s\n" "${stages[@]}"' EXIT

# Each sanitizer build compiles in the background while the tests before it run, at the lowest
# CPU priority (nice 19): the tests leave a core idle much of the time (they wait on children,
# pipes and sleeps) and the build takes only that, so the tests run as they would alone.
# background_done PID LOG NAME: waits for a background build, prints its LOG, and stops the
# script if it failed.
background_done() {
  local pid=$1 log=$2 name=$3 status=0
  wait "$pid" || status=$?
  cat "$log"
  if [ "$status" -ne 0 ]; then
    echo "test: the $name failed (exit $status; its output is above)" >&2
    exit "$status"
  fi
}

mmc_install_deps
# Benchmarks are built (and smoke-tested) in the Release build so they cannot rot.
# The Release and ASan builds share the python fixtures' outputs (run once, copied once).
fixture_cache=(-DMMC_FIXTURE_CACHE="$PWD/build/fixture_cache")
mmc_build build -DCMAKE_BUILD_TYPE=Release -DMMC_BUILD_BENCHMARKS=ON "${fixture_cache[@]}"
stage_done "release build"

# The sanitizer builds: -O1 -g1 (MMC_SANITIZER_FLAGS in deps.sh). The ASan+UBSan build is
# clang-14's and holds the libFuzzer targets too: its ctest runs the whole suite and a fuzz
# smoke of each target (mmc_fuzz_smoke_*, 10 s each, over seeds made by numpy, zarr-python and
# h5py), one library build for both. The Release and TSan builds are g++'s.
# It compiles (nice 19) while the Release tests run.
(
  renice -n 19 -p "$BASHPID" > /dev/null
  export CC=clang-14 CXX=clang++-14
  mmc_build build-asan "${MMC_SANITIZER_FLAGS[@]}" -DMMC_SANITIZE=ON -DMMC_FUZZ=ON \
    "${fixture_cache[@]}"
) > build/asan-build.log 2>&1 &
asan_build=$!
ctest --test-dir build --output-on-failure -j2
stage_done "release tests (asan build beside them)"
background_done "$asan_build" build/asan-build.log "ASan build"
stage_done "asan build (the rest)"

# ThreadSanitizer over the code that runs threads: the thread backends, mmc::Pool's dispatcher
# (with fork server, cancellation, interrupts), the shared containers and the cache's key lock.
# Only those test binaries are built and only those tests run, so the step stays a few minutes.
# Each test runs in its own process (ctest), so no test forks from a parent another test left
# threaded.
MMC_TSAN_TESTS='(^|/)(PoolEveryBackend|PoolErrors|PoolInterrupt|PoolInterruptSigint|PoolMap|PoolWorkers|PoolWorkerLost|EveryBackend|ProcessPool|PoolCancel|PoolCapture|PoolStdio|ParallelDefaults|SharedEveryBackend|SharedArray|SharedContainersEveryBackend|SharedVector|SharedMap|SharedString|Memoize)\.|CachedReduce\.EightConcurrent'
# The threaded tests reduce u8 arrays only: the executor is built for u8 alone (MMC_REDUCE_TYPES).
# It compiles (nice 19) while the ASan tests run.
(
  renice -n 19 -p "$BASHPID" > /dev/null
  mmc_configure build-tsan "${MMC_SANITIZER_FLAGS[@]}" -DMMC_TSAN=ON -DMMC_BUILD_BENCHMARKS=OFF \
    -DMMC_REDUCE_TYPES=u8
  cmake --build build-tsan --target mmc_pool_tests mmc_parallel_tests \
    mmc_shared_containers_tests mmc_cache_tests
) > build/tsan-build.log 2>&1 &
tsan_build=$!
ctest --test-dir build-asan --output-on-failure -j2
stage_done "asan tests (tsan build beside them)"
background_done "$tsan_build" build/tsan-build.log "TSan build"
stage_done "tsan build (the rest)"
# GCC 12's TSan aborts with "FATAL: ThreadSanitizer: unexpected memory mapping" on kernels that
# randomize mmap more than it expects (vm.mmap_rnd_bits > 28 on x86-64): run without address
# randomization there, when the kernel lets us.
tsan_prefix=()
if [ "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)" -gt 28 ] &&
  setarch "$(uname -m)" -R true 2>/dev/null; then
  tsan_prefix=(setarch "$(uname -m)" -R)
fi
"${tsan_prefix[@]}" ctest --test-dir build-tsan --output-on-failure -j2 -R "$MMC_TSAN_TESTS"
stage_done "tsan tests"
