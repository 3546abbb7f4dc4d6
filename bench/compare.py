#!/usr/bin/python3
"""Per-image mean and variance of an image cube, timed side by side in one run on the same
files: mmcompute (a whole `mmcompute reduce` process) against what scientific programmers use
today (OP is mean or var, the population variance, ddof=0):

  numpy            np.memmap(...).OP(axis=(1, 2))
  joblib           Parallel(n_jobs)(delayed(mean_intensity)(images[i]) for i in ...)  (the recipe;
                   var_intensity, img.var(), for var)
  multiprocessing  Pool(n_jobs).map over slice indices, each worker opening its own memmap
  dask             da.from_array(memmap, chunks=(16, ny, nx)).OP(axis=(1, 2)).compute()
  h5py             the same data in a contiguous HDF5 dataset, reduced slice by slice

for several ops, dtypes, n_jobs and cube sizes, warm and cold page cache (cold needs root: the
page cache is dropped before every cold run), with the machine's roofline (bench/mmc_roofline)
measured in the same run. Every peer's answers are checked against mmcompute's
(np.allclose, rtol=1e-12, atol=0); mismatches are flagged loudly.

Usage (from the repository root, after building with -DMMC_BUILD_BENCHMARKS=ON):
  /usr/bin/python3 bench/compare.py                  # mean, var; 0.5, 1, 2 GiB; u8, f32; n_jobs 1,2
  /usr/bin/python3 bench/compare.py --sizes 2        # one size
  /usr/bin/python3 bench/compare.py --ops mean       # one op
  /usr/bin/python3 bench/compare.py --quick          # 64 MiB, warm only: a CI smoke run (<1 min)
Writes results/<date-time>/{table.md, results.json, *.png}. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30
IMAGE = (1024, 1024)  # elements per image; slices = cube bytes / image bytes
DTYPES = {"u8": np.uint8, "u16": np.uint16, "i32": np.int32, "f16": np.float16,
          "f32": np.float32, "f64": np.float64}
IO_CHUNK = 16 << 20
PEERS = ["mmcompute", "numpy", "joblib", "multiprocessing", "dask", "h5py"]
PARALLEL = {"mmcompute", "joblib", "multiprocessing", "dask"}  # the others ignore n_jobs
# Per-image reductions: each name is both mmcompute's --op and the numpy/dask method the peers
# call (var: population variance, ddof=0 on both sides).
OPS = ["mean", "var"]
RTOL = 1e-12
# Peers that accumulate float32 data in float32 (numpy's .mean()/.var() of float32, and the
# recipes built on it) are this far from the float64 answer; within it a difference from
# mmcompute (which accumulates in float64) is expected, not a mismatch.
F32_RTOL = 1e-5
F16_RTOL = 1e-3  # a float32 sum of float16 values, rounded to float16 by numpy


# ---------------------------------------------------------------------------------------------
# The contenders, each called as fn(cube, n_jobs, op) with op in OPS. Module-level functions so
# that joblib and multiprocessing can pickle them.

def mean_intensity(img):
    return img.mean()


def var_intensity(img):
    return img.var()


PER_IMAGE = {"mean": mean_intensity, "var": var_intensity}


def run_numpy(cube, n_jobs, op):
    images = np.memmap(cube["path"], dtype=cube["np_dtype"], mode="r", shape=cube["shape"])
    return getattr(images, op)(axis=(1, 2))


def run_joblib(cube, n_jobs, op):
    from joblib import Parallel, delayed
    images = np.memmap(cube["path"], dtype=cube["np_dtype"], mode="r", shape=cube["shape"])
    return np.array(Parallel(n_jobs=n_jobs)(delayed(PER_IMAGE[op])(images[i])
                                            for i in range(images.shape[0])))


_mp_images = None
_mp_op = None


def _mp_open(path, dtype, shape, op):
    global _mp_images, _mp_op
    _mp_images = np.memmap(path, dtype=dtype, mode="r", shape=shape)
    _mp_op = PER_IMAGE[op]


def _mp_slice(i):
    return _mp_op(_mp_images[i])


def run_multiprocessing(cube, n_jobs, op):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(n_jobs, initializer=_mp_open,
                  initargs=(cube["path"], cube["np_dtype"], cube["shape"], op)) as pool:
        return np.array(pool.map(_mp_slice, range(cube["shape"][0])))


def run_dask(cube, n_jobs, op):
    import dask.array as da
    images = np.memmap(cube["path"], dtype=cube["np_dtype"], mode="r", shape=cube["shape"])
    arr = da.from_array(images, chunks=(16,) + tuple(cube["shape"][1:]))
    return getattr(arr, op)(axis=(1, 2)).compute(scheduler="threads", num_workers=n_jobs)


def numpy_temporary_bytes(cube, op):
    """What run_numpy allocates besides its answer: np.var over the whole memmap makes
    `images - mean` as one array of the cube's shape (float64 for integer data, the data's own
    type for floats); np.mean makes none."""
    if op != "var":
        return 0
    dt = np.dtype(cube["np_dtype"])
    return int(np.prod(cube["shape"])) * (8 if dt.kind in "iub" else dt.itemsize)


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_h5py(cube, n_jobs, op):
    import h5py
    with h5py.File(cube["h5"], "r") as f:
        d = f["images"]
        return np.array([PER_IMAGE[op](d[i]) for i in range(d.shape[0])])


class MmcomputeRunner:
    """`mmcompute reduce` as a whole process; keeps its rusage (including its reaped workers)
    and the reduce time it reports itself with -v, to split process overhead from the scan."""
    VERBOSE_RE = re.compile(r"in ([0-9.]+) s = ([0-9.]+) GB/s")

    def __init__(self, binary, tmp):
        self.binary = binary
        self.out = os.path.join(tmp, "answer.npy")
        self.last = {}

    def __call__(self, cube, n_jobs, op):
        cmd = [self.binary, "reduce", cube["path"], "--dtype", cube["dtype"], "--shape",
               ",".join(map(str, cube["shape"])), "--op", op, "--jobs", str(n_jobs),
               "--quiet", "--no-cache", "-v", "-o", self.out]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read().decode(errors="replace")
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {err.strip()}")
        m = self.VERBOSE_RE.search(err)
        self.last = {"user_s": ru.ru_utime, "sys_s": ru.ru_stime, "minflt": ru.ru_minflt,
                     "majflt": ru.ru_majflt, "reduce_s": float(m.group(1)) if m else None,
                     "command": " ".join(cmd)}
        return np.load(self.out)


# ---------------------------------------------------------------------------------------------
# Files and the page cache.

def can_drop_caches():
    # Checked without writing: a test write would itself drop the page cache.
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def read_through(path):
    """Reads a file with read() so it is in the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(IO_CHUNK)
        while f.readinto(buf):
            pass


def reload_cache(path):
    """Drops a file's clean pages from the page cache (no root needed) and reads it back with
    read(), in large folios."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    read_through(path)


def rewrite_with_write(path):
    """Rewrites a file with large write() calls and renames it into place. `mmcompute gen`
    fills its file through a shared mapping; pages dirtied that way sit in the page cache as
    small folios, which map and fault several times slower (8x the faults here) than the large
    folios that write() (or a cold read) makes; see bench/README.md. Real cubes come from
    writer programs or from disk, so we measure those."""
    tmp = path + ".rewrite"
    with open(path, "rb", buffering=0) as src, open(tmp, "wb", buffering=0) as dst:
        buf = bytearray(IO_CHUNK)
        while True:
            n = src.readinto(buf)
            if not n:
                break
            dst.write(memoryview(buf)[:n])
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    reload_cache(path)  # drop the old file's pages if any are still cached


def make_cube(binary, data_dir, dtype, nbytes):
    item = np.dtype(DTYPES[dtype]).itemsize
    slices = max(1, nbytes // (IMAGE[0] * IMAGE[1] * item))
    shape = (slices,) + IMAGE
    path = os.path.join(data_dir, f"cube_{dtype}_{'x'.join(map(str, shape))}.raw")
    real_bytes = slices * IMAGE[0] * IMAGE[1] * item
    if not os.path.exists(path) or os.path.getsize(path) != real_bytes:
        log(f"making {path} ({real_bytes / GIB:.2f} GiB) with mmcompute gen")
        subprocess.run([binary, "gen", path, "--shape", ",".join(map(str, shape)), "--dtype",
                        dtype, "--jobs", "-1", "--quiet"], check=True)
        rewrite_with_write(path)
    return {"path": path, "dtype": dtype, "np_dtype": np.dtype(DTYPES[dtype]).str,
            "shape": shape, "nbytes": real_bytes}


def make_h5(cube, folder):
    import h5py
    path = os.path.join(folder, os.path.basename(cube["path"]) + ".h5")
    images = np.memmap(cube["path"], dtype=cube["np_dtype"], mode="r", shape=cube["shape"])
    with h5py.File(path, "w") as f:
        d = f.create_dataset("images", shape=cube["shape"], dtype=images.dtype)  # contiguous
        for i in range(0, cube["shape"][0], 16):
            d[i:i + 16] = images[i:i + 16]
    # Write the copy back now: left dirty, its writeback would run under the timed runs that
    # follow (the first of them mmcompute's), taking disk, memory bandwidth and a core.
    os.sync()
    return path


def float64_reference(cube, op):
    """The exact answer to compare against, in float64. var goes slice by slice (a float64 copy
    of one image at a time) and in two passes, so memory stays bounded and nothing cancels."""
    images = np.memmap(cube["path"], dtype=cube["np_dtype"], mode="r", shape=cube["shape"])
    if op == "mean":
        return images.mean(axis=(1, 2), dtype=np.float64)
    if op == "var":
        out = np.empty(cube["shape"][0])
        for i in range(cube["shape"][0]):
            x = images[i].astype(np.float64)
            out[i] = ((x - x.mean()) ** 2).mean()
        return out
    raise ValueError(f"no float64 reference for op {op!r}")


REFERENCE_TEXT = {"mean": "`mean(axis=(1, 2), dtype=np.float64)`",
                  "var": "per slice `x = img.astype(np.float64); ((x - x.mean())**2).mean()`"}


def warm_up(fns, peers, jobs, ops, tmp):
    """Runs every Python contender once, untimed, on a tiny cube: imports dask and h5py and
    starts joblib's worker processes (loky keeps them), so the timed runs measure the scan, not
    the interpreter's one-time start-up. mmcompute gets no such favour: it is a whole process
    every time."""
    path = os.path.join(tmp, "warm_up.raw")
    np.arange(4 * 64 * 64, dtype=np.uint8).tofile(path)
    cube = {"path": path, "dtype": "u8", "np_dtype": "|u1", "shape": (4, 64, 64),
            "nbytes": 4 * 64 * 64}
    if "h5py" in peers:
        cube["h5"] = make_h5(cube, tmp)
    for peer in peers:
        if peer != "mmcompute":
            for n_jobs in (jobs if peer in PARALLEL else [1]):
                for op in ops:
                    fns[peer](cube, n_jobs, op)


# ---------------------------------------------------------------------------------------------
# Measurement.

def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def time_once(fn, cube, n_jobs, op, cold):
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    result = fn(cube, n_jobs, op)
    return time.perf_counter() - t0, np.asarray(result)


def compare_answer(answer, reference, exact):
    """(same, max relative difference) of a peer's answer against mmcompute's (reference),
    the difference relative to the float64 answer (exact)."""
    answer = np.asarray(answer, dtype=np.float64).ravel()
    if answer.shape != reference.shape:
        return False, float("inf")
    same = bool(np.allclose(answer, reference, rtol=RTOL, atol=0, equal_nan=True))
    denom = np.maximum(np.abs(exact), np.finfo(np.float64).tiny)
    return same, float(np.max(np.abs(answer - reference) / denom)) if answer.size else 0.0


def run_roofline(binary, cube_path, cold, quick, repeat=None):
    if not binary or not os.path.exists(binary):
        log(f"no mmc_roofline at {binary}: the roofline is not measured")
        return []
    repeat = repeat or (3 if quick else 5)
    cmd = [binary, "--file", cube_path, "--repeat", str(repeat)]
    if quick:
        cmd += ["--bytes", "256M"]
    if not cold:
        cmd.append("--no-disk")
    log("roofline: " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def warm_probe(binary, cube, op, quick, repeat):
    """mem_file right before an op's warm runs, on the cube they read, best of as many tries as
    each contender gets. The memory bandwidth this shared virtual machine gets moves by 10-20%
    from minute to minute (mem_file with 2 threads: 24 to 33 GB/s within one hour here), so a
    warm ratio is taken against the probe next to it rather than against one probe minutes
    away."""
    probe = run_roofline(binary, cube["path"], False, quick, repeat)
    return {"op": op, "dtype": cube["dtype"], "size_gib": cube["nbytes"] / GIB,
            "mem_file": roofline_gbps(probe, "mem_file"),
            "mem_file_1": roofline_gbps(probe, "mem_file", threads=1)}


def roofline_gbps(roofline, name, threads=None):
    best = None
    for r in roofline:
        if r.get("name") == name and r.get("measured", True) and \
                (threads is None or r.get("threads") == threads):
            best = max(best or 0.0, r["gbps"])
    return best


# ---------------------------------------------------------------------------------------------
# Reports.

def fmt(x, spec=".2f", none="–"):
    return none if x is None else format(x, spec)


def write_table(path, meta, runs, roofline, probes):
    mem = roofline_gbps(roofline, "mem_file")
    disk = roofline_gbps(roofline, "disk_cold")
    ops = meta["ops"]
    lines = [f"# mmcompute vs peers: per-image {', '.join(ops)} ({meta['started']})", ""]
    lines.append(f"Command: `{meta['command']}`  ")
    lines.append(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}; "
                 f"mmcompute {meta['mmcompute']} at {meta['git']}  ")
    lines.append(f"Best of {meta['repeat']} warm (file read once before), "
                 f"{meta['repeat_cold']} cold (page cache dropped before each run). "
                 "mmcompute is timed as a whole process; the Python peers run inside this "
                 "(already started) interpreter.")
    lines.append("")
    lines.append("## Roofline (bench/mmc_roofline, same run)")
    lines.append("")
    if not roofline:
        lines.append("Not measured (no mmc_roofline binary: build with "
                     "-DMMC_BUILD_BENCHMARKS=ON or pass --roofline); \"of roofline\" is left "
                     "blank.")
    else:
        lines.append("| probe | threads | GB/s |")
        lines.append("| --- | ---: | ---: |")
        for r in roofline:
            if r.get("name") == "machine":
                continue
            if r.get("measured", True):
                lines.append(f"| {r['name']} | {r['threads']} | {r['gbps']:.2f} |")
            else:
                lines.append(f"| {r['name']} | | {r['reason']} |")
    lines.append("")
    if probes:
        lines.append("Warm probes, each run right before an op's warm runs on the cube they "
                     "read (the machine's memory bandwidth moves from minute to minute):")
        lines.append("")
        lines.append("| op | dtype | GiB | mem_file, all CPUs | mem_file, 1 thread |")
        lines.append("| --- | --- | ---: | ---: | ---: |")
        for pr in probes:
            lines.append(f"| {pr['op']} | {pr['dtype']} | {pr['size_gib']:g} | "
                         f"{fmt(pr['mem_file'])} | {fmt(pr['mem_file_1'])} |")
        lines.append("")
    lines.append("Ratios: warm runs against mem_file with all CPUs (AVX2 sum over a prefaulted "
                 "mapping of the same cube) of the warm probe next to them (the run's first "
                 "probe when there is none), cold runs against disk_cold of the first probe.")
    lines.append("")

    def key(r):
        return (r["op"], r["dtype"], r["size_gib"], r["cache"], r["n_jobs"])
    mmc = {key(r): r for r in runs if r["peer"] == "mmcompute" and r.get("seconds")}

    lines.append("## Headline (largest cube, best n_jobs of each contender)")
    lines.append("")
    lines.append("| op | dtype | cache | contender | n_jobs | GB/s | of roofline | "
                 "mmcompute speed-up |")
    lines.append("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    biggest = max((r["size_gib"] for r in runs), default=0)
    for op in ops:
        for dtype in meta["dtypes"]:
            for cache in meta["caches"]:
                best = {}
                for r in runs:
                    if r["op"] == op and r["dtype"] == dtype and r["cache"] == cache and \
                            r["size_gib"] == biggest and r.get("gbps") and \
                            r["gbps"] > best.get(r["peer"], {}).get("gbps", 0):
                        best[r["peer"]] = r
                m = best.get("mmcompute")
                for peer in PEERS:
                    r = best.get(peer)
                    if not r:
                        continue
                    up = m["gbps"] / r["gbps"] if m else None
                    lines.append(f"| {op} | {dtype} | {cache} | {peer} | {r['n_jobs']} | "
                                 f"{r['gbps']:.2f} | {fmt(r.get('of_roofline'))} | "
                                 f"{fmt(up, '.1f')}x |")
    lines.append("")

    by_op = sorted(runs, key=lambda r: ops.index(r["op"]))  # stable: run order within an op

    lines.append("## All runs")
    lines.append("")
    lines.append("| op | dtype | GiB | cache | contender | n_jobs | seconds | GB/s | of roofline "
                 "| mmcompute speed-up | same answer | max rel diff |")
    lines.append("| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | :---: "
                 "| ---: |")
    for r in by_op:
        if r.get("error") or r.get("skipped"):
            what = "**FAILED**" if r.get("error") else "skipped"
            lines.append(f"| {r['op']} | {r['dtype']} | {r['size_gib']:g} | {r['cache']} | "
                         f"{r['peer']} | {r['n_jobs']} | | | | | {what} | "
                         f"{(r.get('error') or r['skipped'])[:80]} |")
            continue
        m = mmc.get(key(r)) or mmc.get((r["op"], r["dtype"], r["size_gib"], r["cache"], 1))
        up = r["seconds"] / m["seconds"] if m else None
        same = ("yes" if r["same"] else "float32 sums" if r.get("float32") else
                "**NO — MISMATCH**")
        lines.append(f"| {r['op']} | {r['dtype']} | {r['size_gib']:g} | {r['cache']} | "
                     f"{r['peer']} | {r['n_jobs']} | {r['seconds']:.3f} | {r['gbps']:.2f} | "
                     f"{fmt(r.get('of_roofline'))} | {fmt(up, '.1f')}x | {same} | "
                     f"{r['max_rel_diff']:.1e} |")
    lines.append("")
    lines.append("Speed-up: the contender's time over mmcompute's at the same op, dtype, size, "
                 "cache and n_jobs (mmcompute with n_jobs 1 for single-threaded peers). Same "
                 f"answer: np.allclose(peer, mmcompute, rtol={RTOL:g}, atol=0); \"float32 "
                 "sums\": a float32 peer that accumulates in float32, within "
                 f"{F32_RTOL:g} of the float64 answer. Max rel diff: "
                 "the largest |peer - mmcompute| over the float64 reference's magnitude. "
                 "mmcompute's first run of each op, dtype and size is checked against the "
                 "float64 reference instead.")
    lines.append("")

    accuracy = []
    for op in ops:
        refs = [r for r in runs if r["peer"] == "mmcompute" and r["op"] == op and
                r.get("err_vs_f64") is not None]
        if refs:
            accuracy.append(f"Accuracy of mmcompute's {op} against a float64 numpy reference "
                            f"({REFERENCE_TEXT[op]}): max relative error "
                            f"{max(r['err_vs_f64'] for r in refs):.1e}.")
    if accuracy:
        lines.append("  \n".join(accuracy))
        lines.append("")
    bad = [r for r in by_op if r.get("seconds") and not r["same"] and not r.get("float32")]
    if bad:
        lines.append("## MISMATCHES")
        lines.append("")
        for r in bad:
            lines.append(f"- **{r['peer']}** {r['op']} {r['dtype']} {r['size_gib']:g} GiB "
                         f"{r['cache']} n_jobs={r['n_jobs']}: max rel diff "
                         f"{r['max_rel_diff']:.1e} from mmcompute; its own max rel error against "
                         f"float64 is {r['err_vs_f64']:.1e}")
        lines.append("")

    lines.append("## Where mmcompute's time goes (rusage of the process and its workers)")
    lines.append("")
    lines.append("| op | dtype | GiB | cache | n_jobs | wall s | reduce s (its own -v) | user s | "
                 "sys s | minor faults | major faults |")
    lines.append("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in by_op:
        if r["peer"] == "mmcompute" and r.get("rusage"):
            u = r["rusage"]
            lines.append(f"| {r['op']} | {r['dtype']} | {r['size_gib']:g} | {r['cache']} | "
                         f"{r['n_jobs']} | {r['seconds']:.3f} | {fmt(u['reduce_s'], '.3f')} | "
                         f"{u['user_s']:.3f} | {u['sys_s']:.3f} | {u['minflt']} | "
                         f"{u['majflt']} |")
    lines.append("")
    if mem is None:
        lines.append("Roofline not measured: ratios left blank.")
    if disk is None and "cold" in meta["caches"]:
        lines.append("Disk not measured (not root?): cold ratios left blank.")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot_all(folder, meta, runs, roofline):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem_all = roofline_gbps(roofline, "mem_file")
    mem_one = roofline_gbps(roofline, "mem_file", threads=1)
    disk = roofline_gbps(roofline, "disk_cold")
    colors = {p: f"C{i}" for i, p in enumerate(PEERS)}
    written = []

    def roof(ax, cache="warm"):
        if cache == "warm":
            if mem_all:
                ax.axhline(mem_all, color="k", lw=1.5, label=f"roofline, all CPUs ({mem_all:.1f})")
            if mem_one and mem_one != mem_all:
                ax.axhline(mem_one, color="k", ls="--", lw=1,
                           label=f"roofline, 1 thread ({mem_one:.1f})")
        elif disk:
            ax.axhline(disk, color="k", lw=1.5, label=f"disk, cold sequential read ({disk:.2f})")

    def best(rows):
        return max(rows, key=lambda r: r["gbps"]) if rows else None

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=110)
        plt.close(fig)
        written.append(name)

    dtypes = meta["dtypes"]
    width = 0.8 / len(PEERS)

    def bars_by_dtype(ok, biggest, op, cache, name):
        """Each contender's best GB/s per dtype on the largest cube, against the roofline."""
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, peer in enumerate(PEERS):
            ys = []
            for dtype in dtypes:
                b = best([r for r in ok if r["peer"] == peer and r["dtype"] == dtype and
                          r["cache"] == cache and r["size_gib"] == biggest])
                ys.append(b["gbps"] if b else 0)
            ax.bar(np.arange(len(dtypes)) + (i - len(PEERS) / 2 + 0.5) * width, ys, width,
                   color=colors[peer], label=peer)
        roof(ax, cache)
        ax.set(title=f"{op}: {biggest:g} GiB, {cache} cache, best n_jobs",
               xticks=range(len(dtypes)), xticklabels=dtypes, ylabel="GB/s")
        ax.legend(fontsize=8)
        save(fig, name)

    for op in meta["ops"]:
        # mean keeps the plain file names; other ops get _OP appended. Titles name the op.
        suffix = "" if op == "mean" else f"_{op}"
        ok = [r for r in runs if r.get("gbps") and r["op"] == op]
        if not ok:
            continue
        biggest = max(r["size_gib"] for r in ok)
        # Throughput against n_jobs (largest cube, warm).
        fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), squeeze=False)
        for ax, dtype in zip(axes[0], dtypes):
            for peer in PEERS:
                pts = sorted((r["n_jobs"], r["gbps"]) for r in ok
                             if r["peer"] == peer and r["dtype"] == dtype and
                             r["cache"] == "warm" and r["size_gib"] == biggest)
                if pts:
                    xs = [p[0] for p in pts] if peer in PARALLEL else meta["jobs"]
                    ys = [p[1] for p in pts] if peer in PARALLEL else \
                        [pts[0][1]] * len(meta["jobs"])
                    ax.plot(xs, ys, "o-" if peer in PARALLEL else ":", color=colors[peer],
                            label=peer)
            roof(ax)
            ax.set(title=f"{op}: {dtype}, {biggest:g} GiB, warm cache", xlabel="n_jobs",
                   ylabel="GB/s", xticks=meta["jobs"], ylim=(0, None))
            ax.legend(fontsize=8)
        save(fig, f"throughput_vs_n_jobs{suffix}.png")

        # Throughput against dtype (largest cube, warm, best n_jobs).
        bars_by_dtype(ok, biggest, op, "warm", f"throughput_vs_dtype{suffix}.png")

        # Throughput against cube size (warm, best n_jobs).
        sizes = sorted({r["size_gib"] for r in ok})
        fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), squeeze=False)
        for ax, dtype in zip(axes[0], dtypes):
            for peer in PEERS:
                pts = []
                for s in sizes:
                    b = best([r for r in ok if r["peer"] == peer and r["dtype"] == dtype and
                              r["cache"] == "warm" and r["size_gib"] == s])
                    if b:
                        pts.append((s, b["gbps"]))
                if pts:
                    ax.plot(*zip(*pts), "o-", color=colors[peer], label=peer)
            roof(ax)
            ax.set(title=f"{op}: {dtype}, warm cache, best n_jobs", xlabel="cube size (GiB)",
                   ylabel="GB/s", xscale="log" if len(sizes) > 2 else "linear", ylim=(0, None))
            ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
            ax.legend(fontsize=8)
        save(fig, f"throughput_vs_size{suffix}.png")

        # Cold cache (largest cube, best n_jobs) against the disk.
        if any(r["cache"] == "cold" for r in ok):
            bars_by_dtype(ok, biggest, op, "cold", f"cold_cache{suffix}.png")
    return written


# ---------------------------------------------------------------------------------------------

def run_contender(fn, peer, cube, op, cache, n_jobs, repeat, mmc, exact, reference, mem, disk):
    """Times one contender (best of `repeat`, the file read once before when warm) and checks
    its answer against mmcompute's (`reference`; the float64 answer `exact` until mmcompute has
    answered). Returns (the run's row, the answer as float64 or None if the contender failed:
    that is reported in the row, not fatal)."""
    size_gib = cube["nbytes"] / GIB
    row = {"op": op, "peer": peer, "dtype": cube["dtype"], "size_gib": size_gib,
           "shape": list(cube["shape"]), "cache": cache, "n_jobs": n_jobs}
    if peer == "numpy":
        need, avail = numpy_temporary_bytes(cube, op), mem_available()
        if need and avail is not None and need > avail // 2:  # no swap here: it would OOM
            row["skipped"] = (f"np.{op} would allocate a {need / GIB:.1f} GiB temporary, over "
                              f"half the {avail / GIB:.1f} GiB available")
            log(f"skipped {op} {peer} {cube['dtype']} {size_gib:g} GiB {cache}: "
                f"{row['skipped']}")
            return row, None
    if cache == "warm":
        read_through(cube["path"])
        if peer == "h5py":
            read_through(cube["h5"])
    try:
        best, answer, usage = float("inf"), None, None
        for _ in range(repeat):
            s, a = time_once(fn, cube, n_jobs, op, cache == "cold")
            if s < best:
                best, answer = s, a
                usage = dict(mmc.last) if peer == "mmcompute" else None
    except Exception as e:  # a failing peer is reported, not fatal
        row["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED {op} {peer} {cube['dtype']} n_jobs={n_jobs} {cache}: {row['error']}")
        return row, None
    ref = reference if reference is not None else exact
    same, diff = compare_answer(answer, ref, exact)
    _, err64 = compare_answer(answer, exact, exact)
    roof = mem if cache == "warm" else disk
    gbps = cube["nbytes"] / best / 1e9
    # numpy sums float32 in float32, and float16 in float32 too (its mean of float16 data).
    float32 = not same and ((cube["dtype"] == "f32" and err64 <= F32_RTOL) or
                            (cube["dtype"] == "f16" and err64 <= F16_RTOL))
    row.update({"seconds": best, "gbps": gbps, "same": same, "float32": float32,
                "max_rel_diff": diff, "err_vs_f64": err64,
                "roofline_gbps": roof, "of_roofline": gbps / roof if roof else None})
    if usage:
        row["rusage"] = usage
    log(f"{op} {cube['dtype']} {size_gib:g} GiB {cache} {peer:15s} n_jobs={n_jobs}: "
        f"{best:.3f} s, {gbps:.2f} GB/s" + ("" if same else
        f"   (float32 accumulation: {err64:.1e} from float64)" if float32 else
        f"   <<< MISMATCH with mmcompute: max rel diff {diff:.1e} >>>"))
    return row, np.asarray(answer, dtype=np.float64).ravel()


def find_binary(explicit, candidates):
    if explicit:
        return explicit
    for c in candidates:
        p = os.path.join(REPO, c)
        if os.path.exists(p):
            return p
    return os.path.join(REPO, candidates[0])


def machine_info(binary):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return "?"
    git = out(["git", "rev-parse", "--short", "HEAD"])
    if out(["git", "status", "--porcelain", "--untracked-files=no"]):
        git += " (+ uncommitted changes)"
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(), "git": git,
            "mmcompute": out([binary, "--version"]) or "?", "python": platform.python_version(),
            "numpy": np.__version__}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.5,1,2", help="cube sizes in GiB (default 0.5,1,2)")
    ap.add_argument("--big", action="store_true", help="also a 4 GiB cube")
    ap.add_argument("--ops", default=",".join(OPS),
                    help="reductions per image, from " + ",".join(OPS) + " (default: all; var is "
                         "the population variance, ddof=0)")
    ap.add_argument("--dtypes", default="u8,f32", help="from " + ",".join(DTYPES))
    ap.add_argument("--jobs", default="1,2", help="n_jobs values (default 1,2)")
    ap.add_argument("--peers", default=",".join(PEERS[1:]),
                    help="contenders besides mmcompute (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="warm runs, best kept (default 3)")
    ap.add_argument("--repeat-cold", type=int, default=2,
                    help="cold runs, best kept (default 2: the disk is shared and noisy)")
    ap.add_argument("--no-cold", action="store_true", help="skip cold-cache runs")
    ap.add_argument("--cold", action="store_true", help="with --quick: do cold runs anyway")
    ap.add_argument("--quick", action="store_true",
                    help="one 64 MiB cube, one repeat, warm only: a smoke run under a minute")
    ap.add_argument("--mmcompute", help="the CLI (default build-bench/tools/mmcompute or "
                                        "build/tools/mmcompute)")
    ap.add_argument("--roofline", help="mmc_roofline (default build-bench/bench/mmc_roofline)")
    ap.add_argument("--data-dir", default=os.environ.get("MMC_BENCH_DATA", "/var/tmp/mmc-bench"),
                    help="where cubes are made and kept between runs (default /var/tmp/mmc-bench "
                         "or $MMC_BENCH_DATA)")
    ap.add_argument("--results", default=os.path.join(REPO, "results"),
                    help="parent of the results/<date-time>/ folder")
    ap.add_argument("--keep-h5", action="store_true", help="keep the HDF5 copies of the cubes")
    args = ap.parse_args()
    if args.quick:
        args.sizes = str(64 / 1024)
        args.repeat = 1
        args.no_cold = not args.cold
    args.size_list = [float(s) for s in args.sizes.split(",")] + ([4.0] if args.big else [])
    args.op_list = [o for o in args.ops.split(",") if o]
    args.dtype_list = args.dtypes.split(",")
    args.jobs_list = [int(j) for j in args.jobs.split(",")]
    args.peer_list = ["mmcompute"] + [p for p in args.peers.split(",") if p and p != "mmcompute"]
    if not args.op_list:
        ap.error("--ops: name at least one op")
    for o in args.op_list:
        if o not in OPS:
            ap.error(f"--ops: unknown op {o!r} (choose from {', '.join(OPS)})")
    if len(set(args.op_list)) != len(args.op_list):
        ap.error("--ops: an op is named twice")
    for d in args.dtype_list:
        if d not in DTYPES:
            ap.error(f"--dtypes: unknown dtype {d!r}")
    for p in args.peer_list:
        if p not in PEERS:
            ap.error(f"--peers: unknown contender {p!r} (choose from {', '.join(PEERS[1:])})")
    return args


def main():
    args = parse_args()
    binary = find_binary(args.mmcompute, ["build-bench/tools/mmcompute", "build/tools/mmcompute"])
    roofline_bin = find_binary(args.roofline, ["build-bench/bench/mmc_roofline",
                                               "build/bench/mmc_roofline"])
    if not os.path.exists(binary):
        sys.exit(f"compare.py: no mmcompute binary at {binary}; build it or pass --mmcompute")
    cold = not args.no_cold
    if cold and not can_drop_caches():
        log("cannot write /proc/sys/vm/drop_caches (not root?): cold runs not measured")
        cold = False
    caches = ["warm"] + (["cold"] if cold else [])

    started = datetime.datetime.now()
    folder = os.path.join(args.results, started.strftime("%Y-%m-%d_%H-%M-%S"))
    h5_dir = os.path.join(folder, "h5")
    os.makedirs(h5_dir, exist_ok=True)
    os.makedirs(args.data_dir, exist_ok=True)
    meta = {"started": started.isoformat(timespec="seconds"),
            "command": " ".join([sys.executable] + sys.argv), "repeat": args.repeat,
            "repeat_cold": args.repeat_cold, "ops": args.op_list, "dtypes": args.dtype_list,
            "jobs": args.jobs_list, "caches": caches, "sizes_gib": args.size_list,
            **machine_info(binary)}
    log(f"results in {folder}")

    cubes = [make_cube(binary, args.data_dir, d, int(s * GIB))
             for s in args.size_list for d in args.dtype_list]
    # The roofline on the largest cube of the first dtype, so the probe maps the same kind of
    # page-cache pages the contenders read.
    roof_cube = max(cubes, key=lambda c: c["nbytes"])
    roofline = run_roofline(roofline_bin, roof_cube["path"], cold, args.quick)
    mem = roofline_gbps(roofline, "mem_file")
    disk = roofline_gbps(roofline, "disk_cold")

    runs, probes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        mmc = MmcomputeRunner(binary, tmp)
        fns = {"mmcompute": mmc, "numpy": run_numpy, "joblib": run_joblib,
               "multiprocessing": run_multiprocessing, "dask": run_dask, "h5py": run_h5py}
        warm_up(fns, args.peer_list, args.jobs_list, args.op_list, tmp)
        for cube in cubes:
            if "h5py" in args.peer_list:
                log(f"writing the HDF5 copy of {cube['path']}")
                cube["h5"] = make_h5(cube, h5_dir)
            for op in args.op_list:  # the cube and its HDF5 copy serve every op
                exact = float64_reference(cube, op)
                reference = None  # mmcompute's answer, once it has one
                for cache in caches:
                    repeat = args.repeat if cache == "warm" else args.repeat_cold
                    mem_here = mem
                    if cache == "warm":
                        # A cold run leaves the cube cached in the folios that fault read-ahead
                        # made, which map several times slower than the large ones read()
                        # makes; every op's warm runs start from read()'s, as the roofline's.
                        reload_cache(cube["path"])
                        if roofline_bin and os.path.exists(roofline_bin):
                            probes.append(warm_probe(roofline_bin, cube, op, args.quick, repeat))
                            mem_here = probes[-1]["mem_file"] or mem
                    for peer in args.peer_list:
                        for n_jobs in (args.jobs_list if peer in PARALLEL else [1]):
                            row, answer = run_contender(fns[peer], peer, cube, op, cache,
                                                        n_jobs, repeat, mmc, exact, reference,
                                                        mem_here, disk)
                            runs.append(row)
                            if peer == "mmcompute" and reference is None:
                                reference = answer
            if not args.keep_h5 and cube.get("h5"):
                os.unlink(cube["h5"])
    if not args.keep_h5:
        shutil.rmtree(h5_dir, ignore_errors=True)

    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"meta": meta, "roofline": roofline, "warm_probes": probes, "runs": runs}, f,
                  indent=1)
    write_table(os.path.join(folder, "table.md"), meta, runs, roofline, probes)
    plots = plot_all(folder, meta, runs, roofline)
    print(open(os.path.join(folder, "table.md")).read())
    log(f"wrote {folder}/table.md, results.json, {', '.join(plots)}")
    mismatches = [r for r in runs
                  if r.get("seconds") and not r["same"] and not r.get("float32")]
    if mismatches:
        log(f"!!! {len(mismatches)} run(s) disagree with mmcompute beyond rtol={RTOL:g}; see "
            "MISMATCHES in table.md")
    if mismatches or any(r.get("error") and r["peer"] == "mmcompute" for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
