#!/usr/bin/python3
"""Nodata and masks: `mmcompute reduce --nodata V` and `--mask MASK.npy` against the plain
reduction of the same cube, and against numpy.ma on a memmap (np.ma.masked_equal for the
nodata value; np.ma.masked_array with the mask broadcast over the images), warm (the cube in
the page cache), per image (axis 1,2) and per pixel (axis 0). Each answer is checked against
numpy.ma's.

The nodata value is 0 (about 1 in 256 elements of a u8 cube, so every block has some); the
mask is one image's shape with 10 % of its pixels set at random, broadcast over the images.

Usage (from the repository root, after a Release build):
  /usr/bin/python3 bench/masked_compare.py [--gib 1] [--dtype u8] [--jobs 2] [--repeats 2]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np

from compare import log  # bench/compare.py, beside this script
from multi_op_compare import IMAGE, make_cube, timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1)
    ap.add_argument("--dtype", default="u8", choices=["u8", "u16", "f32", "f64"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    np_dtype = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32, "f64": np.float64}[args.dtype]
    binary = os.path.join(REPO, "build", "tools", "mmcompute")
    path, shape = make_cube(binary, args.dtype, np_dtype, args.gib)
    source = [path, "--dtype", args.dtype, "--shape", ",".join(map(str, shape))]
    work = tempfile.mkdtemp()
    out = os.path.join(work, "r.npy")
    mask_path = os.path.join(work, "mask.npy")
    mask = np.random.default_rng(0).random(IMAGE) < 0.1
    np.save(mask_path, mask)

    def cli(axis, *extra):
        subprocess.run([binary, "reduce", *source, "--op", "mean", "--axis", axis, "--jobs",
                        str(args.jobs), "-o", out, "--quiet", "--no-cache", *extra], check=True)
        return np.load(out)

    def numpy_ma(axis, how):
        cube = np.memmap(path, dtype=np_dtype, mode="r", shape=shape)
        if how == "nodata":
            kept = np.ma.masked_equal(cube, 0)
        else:
            kept = np.ma.masked_array(cube, mask=np.broadcast_to(mask, shape))
        return kept.mean(axis=axis, dtype=np.float64).filled(np.nan)

    rows = []
    for axis_text, axis in (("1,2", (1, 2)), ("0", 0)):
        contenders = {
            "mmcompute": lambda: cli(axis_text),
            "mmcompute --nodata 0": lambda: cli(axis_text, "--nodata", "0"),
            "mmcompute --mask": lambda: cli(axis_text, "--mask", mask_path),
            "numpy.ma masked_equal (memmap)": lambda: numpy_ma(axis, "nodata"),
            "numpy.ma mask (memmap)": lambda: numpy_ma(axis, "mask"),
        }
        best = {}
        answers = {}
        for name, fn in contenders.items():
            for _ in range(args.repeats):
                seconds, answers[name] = timed(fn, path, cold=False)
                best[name] = min(best.get(name, seconds), seconds)
            log(f"axis {axis_text} {name}: {best[name]:.3f} s")
        for ours, theirs in (("mmcompute --nodata 0", "numpy.ma masked_equal (memmap)"),
                             ("mmcompute --mask", "numpy.ma mask (memmap)")):
            if not np.allclose(answers[ours], answers[theirs], rtol=1e-12, equal_nan=True):
                raise SystemExit(f"MISMATCH: {ours} against {theirs}, axis {axis_text}")
        for name in contenders:
            rows.append((axis_text, name, best[name], best[name] / best["mmcompute"]))
    print(f"# mean of a {os.path.getsize(path) / (1 << 30):.2f} GiB {args.dtype} cube {shape} "
          f"in page cache, {args.jobs} workers, best of {args.repeats}")
    print()
    print("| axis | contender | warm s | / plain mmcompute |")
    print("|---|---|---|---|")
    for axis_text, name, seconds, ratio in rows:
        print(f"| {axis_text} | {name} | {seconds:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
