#!/usr/bin/python3
"""A 1 % selection of a cold cube against a full read: `mmcompute reduce --select ::100,:,:`
(every 100th image) against the whole cube's reduction, and numpy's memmap a[::100], each run
after the cube's pages were dropped; the bytes each read are the cube's pages in the page cache
afterwards (fincore).

Target (issue 17): reducing 1 % of a cold cube reads about 1 % of its bytes.

Usage (from the repository root, after a Release build):
  /usr/bin/python3 bench/select_compare.py [--gib 2] [--dtype u8] [--jobs 2] [--step 100]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np

from compare import log  # bench/compare.py, beside this script
from multi_op_compare import drop_file_pages, make_cube, timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cached_bytes(path):
    out = subprocess.run(["fincore", "--noheadings", "--bytes", "--output", "RES", path],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--dtype", default="u8", choices=["u8", "u16", "f32", "f64"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--step", type=int, default=100)
    args = ap.parse_args()
    np_dtype = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32, "f64": np.float64}[args.dtype]
    binary = os.path.join(REPO, "build", "tools", "mmcompute")
    path, shape = make_cube(binary, args.dtype, np_dtype, args.gib)
    source = [path, "--dtype", args.dtype, "--shape", ",".join(map(str, shape))]
    out = os.path.join(tempfile.mkdtemp(), "r.npy")
    selection = f"::{args.step},:,:"

    def cli(*extra):
        subprocess.run([binary, "reduce", *source, "--op", "mean", "--jobs", str(args.jobs),
                        "-o", out, "--quiet", *extra], check=True)
        return np.load(out)

    def numpy_view():
        cube = np.memmap(path, dtype=np_dtype, mode="r", shape=shape)
        return cube[::args.step].mean(axis=(1, 2), dtype=np.float64)

    contenders = {
        "mmcompute, whole cube": lambda: cli(),
        f"mmcompute --select {selection}": lambda: cli("--select", selection),
        f"numpy memmap a[::{args.step}]": numpy_view,
    }
    total = os.path.getsize(path)
    selected = len(range(0, shape[0], args.step)) * total // shape[0]
    rows = []
    answers = {}
    for name, fn in contenders.items():
        seconds, answers[name] = timed(fn, path, cold=True)
        read = cached_bytes(path)
        rows.append((name, seconds, read))
        log(f"cold {name}: {seconds:.3f} s, {read / (1 << 20):.1f} MiB read")
        drop_file_pages(path)
    whole = answers["mmcompute, whole cube"][::args.step]
    for name in list(contenders)[1:]:
        if not np.allclose(answers[name], whole, rtol=1e-12, atol=0):
            raise SystemExit(f"MISMATCH: {name}")
    print(f"# Every {args.step}th image of a cold {total / (1 << 30):.2f} GiB {args.dtype} cube "
          f"{shape}: {selected / total * 100:.2f} % of its bytes selected, {args.jobs} workers")
    print()
    print("| contender | cold s | / whole cube | bytes read | read / selected | read / cube |")
    print("|---|---|---|---|---|---|")
    for name, seconds, read in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / rows[0][1]:.3f} | "
              f"{read / (1 << 20):.1f} MiB | {read / selected:.2f} | {read / total * 100:.2f} % |")


if __name__ == "__main__":
    main()
