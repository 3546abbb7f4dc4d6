#!/usr/bin/env bash
# Longer fuzz runs, by hand (scripts/test.sh runs a 10 s smoke of each target in build-asan's
# ctest): builds the libFuzzer targets of tests/fuzz with clang-14 in build-fuzz/ (library and
# targets only, ASan+UBSan, at -O1 -g1 like the sanitizer builds), makes their seeds with numpy,
# zarr-python and h5py, and runs each target for MMC_FUZZ_SECONDS (default 60), two at a time.
# Exits non-zero on any finding (crash, sanitizer report, leak, timeout, out-of-memory); the
# input that found it is kept as build-fuzz/findings/<target>-crash-... and the log as
# build-fuzz/logs/<target>.log.
# Skips (exit 0, one line) when clang++-14 is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

if ! command -v clang++-14 >/dev/null; then
  echo "fuzz: clang++-14 not installed, fuzz smoke skipped" >&2
  exit 0
fi
seconds="${MMC_FUZZ_SECONDS:-60}"
dir=build-fuzz
targets=(npy zarr codecs hdf5_chunk cli_values)
start=$(date +%s)

CC=clang-14 CXX=clang++-14 mmc_configure "$dir" "${MMC_SANITIZER_FLAGS[@]}" -DMMC_FUZZ=ON \
  -DMMC_BUILD_TESTS=OFF -DMMC_WITH_MPI=OFF
cmake --build "$dir" --target mmc_fuzzers
built=$(date +%s)

rm -rf "$dir/seeds" "$dir/logs"
mkdir -p "$dir/seeds" "$dir/logs" "$dir/findings"
/usr/bin/python3 tests/fuzz/make_seeds.py "$dir/seeds"

# run_target NAME: fuzzes one target into its own growing corpus; libFuzzer's exit status.
run_target() {
  local t="$1"
  mkdir -p "$dir/corpus/$t"
  "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/findings/$t-" \
    "$dir/corpus/$t" "$dir/seeds/$t" >"$dir/logs/$t.log" 2>&1
}

failed=()
pids=()
names=()
# Waits for the oldest running target and records whether it found anything.
reap() {
  if ! wait "${pids[0]}"; then failed+=("${names[0]}"); fi
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
}
for t in "${targets[@]}"; do
  run_target "$t" &
  pids+=($!)
  names+=("$t")
  if [ "${#pids[@]}" -ge 2 ]; then reap; fi
done
while [ "${#pids[@]}" -gt 0 ]; do reap; done

for t in "${targets[@]}"; do
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/logs/$t.log")
  echo "fuzz: $t: ${runs:-?} executions in ${seconds} s"
done
end=$(date +%s)
echo "fuzz: build $((built - start)) s, whole step $((end - start)) s"
if [ "${#failed[@]}" -ne 0 ]; then
  for t in "${failed[@]}"; do
    echo "fuzz: FINDING in $t (log $dir/logs/$t.log):" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$dir/logs/$t.log" >&2 || tail -20 "$dir/logs/$t.log" >&2
  done
  exit 1
fi
