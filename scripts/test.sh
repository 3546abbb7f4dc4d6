#!/usr/bin/env bash
# The whole test suite: a Release build in build/, then an ASan+UBSan build in build-asan/.
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

# Fuzz smoke: each libFuzzer target of tests/fuzz for a bounded time (clang-14; see scripts/fuzz.sh).
scripts/fuzz.sh
