#!/usr/bin/python3
"""Several statistics in one pass: `mmcompute reduce --op mean,std,min,max` against one op alone,
against the four ops run one after the other, and against numpy computing the four on a memmap,
warm (the cube in the page cache) and cold (its pages dropped with posix_fadvise before each
run; no root needed), every contender timed in the same run on the same file.

Targets (issue 17): the four in one pass within 1.3x of one op warm, within 1.1x cold.

Usage (from the repository root, after a Release build):
  /usr/bin/python3 bench/multi_op_compare.py [--gib 2] [--dtype u8] [--jobs 2] [--repeats 3]
The cube is data/multi_<dtype>_<shape>.raw (made with `mmcompute gen` and rewritten with
write(), as bench/compare.py does, so its pages are large folios like a real file's).
Answers are checked against numpy's (rtol 1e-12; float32 data: 1e-5 for numpy's float32 sums).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from compare import IO_CHUNK, log, read_through  # bench/compare.py, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = (1024, 1024)
OPS = ["mean", "std", "min", "max"]


def drop_file_pages(path):
    """Drops a file's clean pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def make_cube(binary, dtype, np_dtype, gib):
    item = np.dtype(np_dtype).itemsize
    slices = max(1, int(gib * (1 << 30)) // (IMAGE[0] * IMAGE[1] * item))
    shape = (slices,) + IMAGE
    os.makedirs(os.path.join(REPO, "data"), exist_ok=True)
    path = os.path.join(REPO, "data", f"multi_{dtype}_{'x'.join(map(str, shape))}.raw")
    nbytes = slices * IMAGE[0] * IMAGE[1] * item
    if not os.path.exists(path) or os.path.getsize(path) != nbytes:
        log(f"making {path}")
        tmp = path + ".gen"
        subprocess.run([binary, "gen", tmp, "--shape", ",".join(map(str, shape)), "--dtype",
                        dtype, "--quiet"], check=True)
        # Rewritten with write(): pages a shared mapping dirtied are small folios (see
        # bench/README.md); a real cube's are not.
        with open(tmp, "rb", buffering=0) as src, open(path, "wb", buffering=0) as dst:
            buf = bytearray(IO_CHUNK)
            while True:
                n = src.readinto(buf)
                if not n:
                    break
                dst.write(memoryview(buf)[:n])
            os.fsync(dst.fileno())
        os.remove(tmp)
    return path, shape


def timed(fn, path, cold):
    if cold:
        os.sync()
        drop_file_pages(path)
    else:
        read_through(path)
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--dtype", default="u8", choices=["u8", "u16", "f32", "f64"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mmcompute", default=os.path.join(REPO, "build", "tools", "mmcompute"))
    args = ap.parse_args()
    np_dtype = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32, "f64": np.float64}[args.dtype]
    path, shape = make_cube(args.mmcompute, args.dtype, np_dtype, args.gib)
    source = [path, "--dtype", args.dtype, "--shape", ",".join(map(str, shape))]
    tmp = tempfile.mkdtemp()
    out = os.path.join(tmp, "r.npz")

    def cli(ops):
        subprocess.run([args.mmcompute, "reduce", *source, "--op", ops, "--jobs", str(args.jobs),
                        "-o", out], check=True)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}

    def numpy_four():
        images = np.memmap(path, dtype=np_dtype, mode="r", shape=shape)
        return {"mean": images.mean(axis=(1, 2), dtype=np.float64),
                "std": images.std(axis=(1, 2), dtype=np.float64),
                "min": images.min(axis=(1, 2)), "max": images.max(axis=(1, 2))}

    def four_runs(cold):
        # Cold: every run reads from disk, as each would on a cube larger than memory.
        answers = {}
        for op in OPS:
            if cold:
                drop_file_pages(path)
            answers.update(cli(op))
        return answers

    state = {"cold": False}
    contenders = {
        "one op (mean)": lambda: cli("mean"),
        "four runs, one op each": lambda: four_runs(state["cold"]),
        "one pass, four ops": lambda: cli(",".join(OPS)),
        "numpy, four ops on a memmap": numpy_four,
    }
    results = {}
    answers = {}
    for cold in (False, True):
        state["cold"] = cold
        for name, fn in contenders.items():
            best = None
            for _ in range(args.repeats):
                seconds, value = timed(fn, path, cold)
                best = seconds if best is None else min(best, seconds)
                answers[name] = value
            results[(name, cold)] = best
            log(f"{'cold' if cold else 'warm'} {name}: {best:.3f} s")
    # Every contender's answers agree with numpy's.
    want = answers["numpy, four ops on a memmap"]
    for name in ("four runs, one op each", "one pass, four ops"):
        for op in OPS:
            if not np.allclose(answers[name][op], want[op], rtol=1e-12, atol=0):
                log(f"MISMATCH: {name} {op}")
                sys.exit(1)
    gib = os.path.getsize(path) / (1 << 30)
    print(f"# Four statistics ({', '.join(OPS)}) per image of a {gib:.2f} GiB {args.dtype} cube "
          f"{shape}, {args.jobs} workers, best of {args.repeats}")
    print()
    print("| contender | warm s | warm / one op | cold s | cold / one op |")
    print("|---|---|---|---|---|")
    for name in contenders:
        w, c = results[(name, False)], results[(name, True)]
        print(f"| {name} | {w:.3f} | {w / results[('one op (mean)', False)]:.2f} | {c:.3f} | "
              f"{c / results[('one op (mean)', True)]:.2f} |")
    one_pass_w = results[("one pass, four ops", False)]
    one_pass_c = results[("one pass, four ops", True)]
    print()
    print(f"one pass against four runs: warm {results[('four runs, one op each', False)] / one_pass_w:.2f}x "
          f"faster, cold {results[('four runs, one op each', True)] / one_pass_c:.2f}x; against numpy: "
          f"warm {results[('numpy, four ops on a memmap', False)] / one_pass_w:.2f}x, cold "
          f"{results[('numpy, four ops on a memmap', True)] / one_pass_c:.2f}x")


if __name__ == "__main__":
    main()
