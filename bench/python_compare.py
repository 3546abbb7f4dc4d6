#!/usr/bin/python3
"""The Python module against the recipes it replaces, every contender timed in one run on one
file: the per-image mean of a u8 cube given as an np.memmap, by `mmcompute.reduce` (2 workers),
numpy's `.mean(axis=(1, 2))` on the memmap, the joblib recipe (Parallel over images), the
recipe's per-image function through `mmcompute.map_slices`, multiprocessing.Pool, dask
(threads), and the `mmcompute` CLI as a whole process; warm (the cube in the page cache) and
cold (its pages dropped before each run). Then the fixed cost of one call on a tiny array
(process backend, forked per call; thread; serial; a warm mmcompute.Pool) against joblib's
Parallel on the same work (its first call in a fresh interpreter, and later calls on its warm
executor).

Targets (issue 19): a call on a tiny array in <= 5 ms with the process backend on a cold pool,
<= 0.5 ms on a warm one (mmcompute.Pool).

Usage (from the repository root, after scripts/run.sh or a Release build):
  /usr/bin/python3 bench/python_compare.py [--gib 2] [--jobs 2] [--repeats 3]
It imports the build's module (build/python) unless MMC_PYTHON_INSTALLED=1.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.environ.get("MMC_PYTHON_INSTALLED") != "1":
    sys.path.insert(0, os.path.join(REPO, "build", "python"))

import mmcompute  # noqa: E402
from compare import (PER_IMAGE, log, read_through, run_dask, run_joblib,  # noqa: E402
                     run_multiprocessing, run_numpy)
from multi_op_compare import drop_file_pages, make_cube  # noqa: E402

# The fixed cost of a tiny call in a fresh interpreter, as a small script pays it: fork's cost
# grows with the forking process (its page tables), and this benchmark's own process holds
# numpy, joblib, dask and the contenders' arrays. (It repeats median_call rather than import
# this module, which would load joblib and dask into the interpreter being measured.)
FRESH_TINY_CALLS = """
import sys, time, numpy as np
sys.path.insert(0, {path!r})
import mmcompute
def median(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))
tiny = {tiny!r}
x = np.load(tiny)
mmcompute.reduce(tiny, "mean", (1, 2), n_jobs={jobs})
print(median(lambda: mmcompute.reduce(tiny, "mean", (1, 2), n_jobs={jobs}), 200),
      median(lambda: mmcompute.reduce(x, "mean", (1, 2), n_jobs={jobs}), 200),
      median(lambda: mmcompute.map_slices(np.mean, x, n_jobs={jobs}), 200))
"""

JOBLIB_FIRST_CALL = """
import time, numpy as np
t = time.perf_counter()
from joblib import Parallel, delayed
x = np.zeros((4, 8, 8), np.uint8)
Parallel(n_jobs={jobs})(delayed(np.mean)(x[i]) for i in range(4))
print(time.perf_counter() - t)
"""


def best_of(fn, repeats, before=lambda: None):
    best, out = None, None
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best, out


def median_call(fn, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mmcompute", default=os.path.join(REPO, "build", "tools", "mmcompute"))
    args = ap.parse_args()
    path, shape = make_cube(args.mmcompute, "u8", np.uint8, args.gib)
    cube = {"path": path, "np_dtype": np.uint8, "shape": shape}
    memmap = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    out = os.path.join(tempfile.mkdtemp(), "m.npy")

    def cli():
        subprocess.run([args.mmcompute, "reduce", path, "--dtype", "u8", "--shape",
                        ",".join(map(str, shape)), "--op", "mean", "--jobs", str(args.jobs),
                        "--no-cache", "-o", out], check=True)
        return np.load(out)

    contenders = {
        "mmcompute.reduce(memmap)": lambda: mmcompute.reduce(memmap, "mean", (1, 2),
                                                             n_jobs=args.jobs),
        "mmcompute CLI (process)": cli,
        # The seed's recipe natively: the same Python function over each image, in forked
        # workers, each image a view of the file's mapping.
        "mmcompute.map_slices(np.mean, memmap)": lambda: np.array(
            mmcompute.map_slices(PER_IMAGE["mean"], memmap, n_jobs=args.jobs)),
        "numpy memmap.mean": lambda: run_numpy(cube, args.jobs, "mean"),
        "joblib recipe": lambda: run_joblib(cube, args.jobs, "mean"),
        "multiprocessing.Pool": lambda: run_multiprocessing(cube, args.jobs, "mean"),
        "dask (threads)": lambda: run_dask(cube, args.jobs, "mean"),
    }
    want = np.asarray(contenders["numpy memmap.mean"]())
    results = {}
    for cold in (False, True):
        before = (lambda: drop_file_pages(path)) if cold else (lambda: read_through(path))
        for name, fn in contenders.items():
            seconds, got = best_of(fn, args.repeats, before)
            if not np.allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-12, atol=0):
                log(f"MISMATCH: {name}")
                sys.exit(1)
            results[(name, cold)] = seconds
            log(f"{'cold' if cold else 'warm'} {name}: {seconds:.3f} s")

    # The cube as an in-memory array (read in place by the engine, no copy).
    in_memory = np.array(memmap)
    mem_ours, got = best_of(lambda: mmcompute.reduce(in_memory, "mean", (1, 2), n_jobs=args.jobs),
                            args.repeats)
    mem_numpy, want_mem = best_of(lambda: in_memory.mean(axis=(1, 2)), args.repeats)
    if not np.allclose(got, want_mem, rtol=1e-12, atol=0):
        log("MISMATCH: in-memory array")
        sys.exit(1)
    del in_memory

    # Fixed cost of a call on a tiny array.
    tiny = os.path.join(tempfile.mkdtemp(), "tiny.npy")
    np.save(tiny, np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8))
    x = np.load(tiny)
    calls = {}
    for backend in ("process", "thread", "serial"):
        mmcompute.reduce(tiny, "mean", (1, 2), backend=backend, n_jobs=args.jobs)
        calls[f"mmcompute.reduce, {backend}"] = median_call(
            lambda b=backend: mmcompute.reduce(tiny, "mean", (1, 2), backend=b, n_jobs=args.jobs),
            200)
    calls["mmcompute.reduce, in-memory array, process"] = median_call(
        lambda: mmcompute.reduce(x, "mean", (1, 2), n_jobs=args.jobs), 200)
    with mmcompute.Pool(n_jobs=args.jobs) as pool:
        pool.reduce(tiny, "mean", (1, 2))
        calls["mmcompute.Pool(process).reduce, warm"] = median_call(
            lambda: pool.reduce(tiny, "mean", (1, 2)), 500)
        calls["mmcompute.Pool(process).reduce, warm, in-memory array"] = median_call(
            lambda: pool.reduce(x, "mean", (1, 2)), 500)
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_TINY_CALLS.format(path=os.path.dirname(os.path.dirname(
            mmcompute.__file__)), tiny=tiny, jobs=args.jobs)],
        capture_output=True, text=True, check=True).stdout.split()
    calls["fresh interpreter: mmcompute.reduce, process"] = float(fresh[0])
    calls["fresh interpreter: mmcompute.reduce, in-memory array, process"] = float(fresh[1])
    calls["fresh interpreter: mmcompute.map_slices(np.mean), process"] = float(fresh[2])
    from joblib import Parallel, delayed
    Parallel(n_jobs=args.jobs)(delayed(np.mean)(x[i]) for i in range(4))
    calls["joblib Parallel, warm executor"] = median_call(
        lambda: Parallel(n_jobs=args.jobs)(delayed(np.mean)(x[i]) for i in range(4)), 20)
    first = [float(subprocess.run([sys.executable, "-c", JOBLIB_FIRST_CALL.format(jobs=args.jobs)],
                                  capture_output=True, text=True, check=True).stdout)
             for _ in range(3)]
    calls["joblib Parallel, first call (import + start)"] = float(np.median(first))

    gib = os.path.getsize(path) / (1 << 30)
    print(f"# Per-image mean of a {gib:.2f} GiB u8 cube {shape} as an np.memmap, {args.jobs} "
          f"workers, best of {args.repeats} ({mmcompute.kernel_isa()} kernels)")
    print("| contender | warm s | warm GB/s | x mmcompute.reduce | cold s | x mmcompute.reduce |")
    print("| --- | --- | --- | --- | --- | --- |")
    ours_w = results[("mmcompute.reduce(memmap)", False)]
    ours_c = results[("mmcompute.reduce(memmap)", True)]
    for name in contenders:
        w, c = results[(name, False)], results[(name, True)]
        print(f"| {name} | {w:.3f} | {gib * (1 << 30) / w / 1e9:.1f} | {w / ours_w:.2f} | "
              f"{c:.3f} | {c / ours_c:.2f} |")
    print()
    print(f"The cube as an in-memory ndarray: mmcompute.reduce {mem_ours:.3f} s, numpy's "
          f"in_memory.mean(axis=(1, 2)) {mem_numpy:.3f} s ({mem_numpy / mem_ours:.1f}x)")
    ms_w, ms_c = (results[("mmcompute.map_slices(np.mean, memmap)", c)] for c in (False, True))
    jl_w, jl_c = (results[("joblib recipe", c)] for c in (False, True))
    print()
    print(f"map_slices(np.mean) against the joblib recipe running the same np.mean: "
          f"{jl_w / ms_w:.2f}x faster warm, {jl_c / ms_c:.2f}x cold")
    print()
    print("# Fixed cost of one call on a 4x8x8 u8 array (median)")
    print("| call | ms |")
    print("| --- | --- |")
    for name, seconds in calls.items():
        print(f"| {name} | {seconds * 1e3:.2f} |")


if __name__ == "__main__":
    main()
