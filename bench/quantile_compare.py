#!/usr/bin/python3
"""Exact per-image median and percentiles: `mmcompute reduce --op median` (and `--op percentile
--q 5,50,95`) against the mean's time, against np.median (which needs the cube in memory: read
whole, then partitioned per image) and against dask.array.median over chunks of images, warm
(the cube in the page cache) and cold (its pages dropped before each run), every contender
timed in the same run on the same file.

Targets (issue 17): the median of u8/u16 within 2x the mean's time; of floats within
(passes + 1)x, passes being 2 for 4-byte types and 4 for 8-byte ones.

Usage (from the repository root, after a Release build):
  /usr/bin/python3 bench/quantile_compare.py [--gib 1] [--dtype u8|u16|f32|f64] [--jobs 2]
      [--repeats 2]
Answers are checked against np.median's and np.percentile's of the float64 cast (equal values).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import dask
import dask.array as da
import numpy as np

from compare import log  # bench/compare.py, beside this script
from multi_op_compare import make_cube, timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q = [5.0, 50.0, 95.0]
PASSES = {"u8": 1, "u16": 1, "f32": 2, "f64": 4}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1)
    ap.add_argument("--dtype", default="u8", choices=list(PASSES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mmcompute", default=os.path.join(REPO, "build", "tools", "mmcompute"))
    args = ap.parse_args()
    np_dtype = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32, "f64": np.float64}[args.dtype]
    path, shape = make_cube(args.mmcompute, args.dtype, np_dtype, args.gib)
    source = [path, "--dtype", args.dtype, "--shape", ",".join(map(str, shape))]
    out = os.path.join(tempfile.mkdtemp(), "r.npz")

    def cli(*op):
        subprocess.run([args.mmcompute, "reduce", *source, "--op", *op, "--jobs", str(args.jobs),
                        "-o", out, "--quiet"], check=True)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}

    def numpy_median():
        cube = np.fromfile(path, dtype=np_dtype).reshape(shape)
        return {"median": np.median(cube, axis=(1, 2))}

    def dask_median():
        images = np.memmap(path, dtype=np_dtype, mode="r", shape=shape)
        x = da.from_array(images, chunks=(max(1, 64 // np.dtype(np_dtype).itemsize),) + shape[1:])
        with dask.config.set(scheduler="threads", num_workers=args.jobs):
            return {"median": da.median(x, axis=(1, 2)).compute()}

    contenders = {
        "mmcompute mean": lambda: cli("mean"),
        "mmcompute median": lambda: cli("median"),
        "mmcompute percentile 5,50,95": lambda: cli("percentile", "--q", ",".join(map(str, Q))),
        "mmcompute median,mean,std,min,max": lambda: cli("median,mean,std,min,max"),
        "numpy median (cube read into memory)": numpy_median,
        "dask median (threads)": dask_median,
    }
    results, answers = {}, {}
    for cold in (False, True):
        for name, fn in contenders.items():
            best = None
            for _ in range(args.repeats):
                seconds, value = timed(fn, path, cold)
                best = seconds if best is None else min(best, seconds)
                answers[name] = value
            results[(name, cold)] = best
            log(f"{'cold' if cold else 'warm'} {name}: {best:.3f} s")
    # Exact answers: equal to numpy's of the float64 cast.
    images = np.memmap(path, dtype=np_dtype, mode="r", shape=shape)
    want_median = answers["numpy median (cube read into memory)"]["median"]
    want_pct = np.stack([np.percentile(images[i].astype(np.float64), Q)
                         for i in range(shape[0])], axis=1)
    checks = [(answers["mmcompute median"]["median"], want_median),
              (answers["mmcompute median,mean,std,min,max"]["median"], want_median),
              (answers["dask median (threads)"]["median"], want_median),
              (answers["mmcompute percentile 5,50,95"]["percentile"], want_pct)]
    for got, want in checks:
        if got.shape != want.shape or not np.array_equal(got, want):
            log("MISMATCH against numpy")
            sys.exit(1)
    gib = os.path.getsize(path) / (1 << 30)
    print(f"# Per-image median and percentiles of a {gib:.2f} GiB {args.dtype} cube {shape}, "
          f"{args.jobs} workers, best of {args.repeats}; {PASSES[args.dtype]} counting pass(es)")
    print()
    print("| contender | warm s | warm / mean | cold s | cold / mean |")
    print("|---|---|---|---|---|")
    for name in contenders:
        w, c = results[(name, False)], results[(name, True)]
        print(f"| {name} | {w:.3f} | {w / results[('mmcompute mean', False)]:.2f} | {c:.3f} | "
              f"{c / results[('mmcompute mean', True)]:.2f} |")


if __name__ == "__main__":
    main()
