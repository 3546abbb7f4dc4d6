#!/usr/bin/env bash
# What MPI costs: the per-image mean of one cube stored three ways (.npy, blosc zarr, gzip HDF5),
# as a single process with one worker and under `mpirun -n 1, 2, 4` with one worker per rank,
# best of 3 after a warm-up, in one run. Prints the whole command's wall time and the reduce
# time rank 0 reports with -v (the result exchange included), and both as ratios against the
# single process.
#
# Usage: bench/mpi_overhead.sh MMCOMPUTE DIR
#   DIR holds cube.npy, cube_blosc.zarr and cube_gzip.h5 (dataset /images), as
#   bench/formats_compare.py --work-dir DIR makes them (its default cube: 512 MiB of u8).
set -euo pipefail
mmc=${1:?usage: mpi_overhead.sh MMCOMPUTE DIR}
dir=${2:?usage: mpi_overhead.sh MMCOMPUTE DIR}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm=isolated \
  OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# best_of_3 CMD...: prints "wall reduce" in seconds, the best of three runs (by wall time).
best_of_3() {
  local best_wall=1000000 best_reduce=0
  "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }  # warm-up
  for _ in 1 2 3; do
    local t0 t1 log wall reduce
    t0=$(date +%s.%N)
    log=$("$@" 2>&1)
    t1=$(date +%s.%N)
    wall=$(echo "$t1 - $t0" | bc -l)
    reduce=$(echo "$log" | sed -n 's/.* in \([0-9.]*\) s = .*/\1/p' | head -1)
    if (($(echo "$wall < $best_wall" | bc -l))); then
      best_wall=$wall
      best_reduce=$reduce
    fi
  done
  printf '%.3f %.3f\n' "$best_wall" "$best_reduce"
}

printf '| source | single -j 1 wall / reduce | mpirun -n 1 | -n 2 | -n 4 |\n'
printf '| --- | --- | --- | --- | --- |\n'
for src in "$dir/cube.npy" "$dir/cube_blosc.zarr" "$dir/cube_gzip.h5:/images"; do
  args=(reduce "$src" --op mean --axis 1,2 -j 1 --quiet --no-cache -v -o "$out/o.npy")
  read -r w1 r1 < <(best_of_3 "$mmc" "${args[@]}")
  row="| $(basename "${src%%:*}") | $w1 / $r1 s |"
  for n in 1 2 4; do
    read -r w r < <(best_of_3 mpirun --oversubscribe -n "$n" "$mmc" "${args[@]}")
    row+=" $w / $r s (wall $(printf '%.2f' "$(echo "$w / $w1" | bc -l)")x, reduce $(printf '%.2f' "$(echo "$r / $r1" | bc -l)")x) |"
  done
  echo "$row"
done
