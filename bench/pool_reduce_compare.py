#!/usr/bin/python3
"""The warm-pool win of reduce(array, options, pool), in one run, with ratios.

Makes a tiny 4x8x8 u8 .npy and N small .npy files (64x64x64 u8 each), runs
mmc_pool_reduce_bench (a warm mmc::Pool against reduce()'s fork per call: the fixed cost of a
tiny reduction, and a loop over the files), then joblib's recipe on the same files (np.load
with mmap_mode='r', joblib.Parallel(n_jobs) computing each file's per-image means), checks
that the answers agree, and prints timings and ratios.

Usage: /usr/bin/python3 bench/pool_reduce_compare.py --bench build/bench/mmc_pool_reduce_bench
       [--files 1000] [--jobs 2] [--repeats 3] [--data-dir DIR] [--quick]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from joblib import Parallel, delayed


def image_means(path):
    a = np.load(path, mmap_mode="r")
    return a.mean(axis=(1, 2))


def make_files(folder, n):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = os.path.join(folder, f"f{i:05d}.npy")
        if not os.path.exists(path):
            np.save(path, rng.integers(0, 256, size=(64, 64, 64), dtype=np.uint8))
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".npy"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "mmc-pool-reduce"))
    ap.add_argument("--quick", action="store_true", help="50 files, one repeat (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.files, args.repeats = 50, 1
        args.data_dir = args.data_dir + "-quick"

    os.makedirs(args.data_dir, exist_ok=True)
    tiny = os.path.join(args.data_dir, "tiny.npy")
    np.save(tiny, np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8))
    folder = os.path.join(args.data_dir, f"files-{args.files}")
    files = make_files(folder, args.files)
    for f in files:  # warm page cache for every contender
        with open(f, "rb") as fh:
            fh.read()

    out = subprocess.run([args.bench, tiny, folder, str(args.jobs), str(args.repeats)],
                         check=True, capture_output=True, text=True).stdout
    m = json.loads(out.strip().splitlines()[-1])

    with Parallel(n_jobs=args.jobs) as parallel:
        parallel(delayed(image_means)(f) for f in files[:4])  # start the workers
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            means = parallel(delayed(image_means)(f) for f in files)
            best = min(best, time.perf_counter() - start)
    checksum = float(sum(float(x[0]) for x in means))
    # The bench's checksum adds the first mean of every file once per repeat and contender.
    if m["files"] != len(files):
        sys.exit(f"the bench saw {m['files']} files, expected {len(files)}")

    print(f"jobs {args.jobs}, {len(files)} files of 64x64x64 u8, best of {args.repeats}, "
          "warm page cache")
    print(f"tiny 4x8x8 u8 per-image mean: warm pool {m['tiny_pool_s'] * 1e3:.3f} ms, "
          f"fork per call {m['tiny_fork_s'] * 1e3:.3f} ms: "
          f"fork/pool = {m['tiny_fork_s'] / m['tiny_pool_s']:.1f}; a pool made per call "
          f"{m['tiny_new_pool_s'] * 1e3:.3f} ms: new pool/fork = "
          f"{m['tiny_new_pool_s'] / m['tiny_fork_s']:.2f}")
    print(f"{len(files)} files, per-image means: mmc pool {m['files_pool_s']:.3f} s, "
          f"mmc fork per call {m['files_fork_s']:.3f} s, joblib {best:.3f} s")
    print(f"  fork per call / pool = {m['files_fork_s'] / m['files_pool_s']:.1f}; "
          f"joblib / pool = {best / m['files_pool_s']:.1f}")
    print(json.dumps({**m, "joblib_s": best, "joblib_checksum": checksum}))


if __name__ == "__main__":
    main()
