#!/usr/bin/python3
"""Per-image mean of one u8 cube stored four ways, timed side by side in one run on the same
data: mmcompute (a whole `mmcompute reduce` process) on each format, against the Python tools
people use to read that format:

  npy         raw .npy                    mmcompute                        (the reference)
  h5-contig   HDF5, contiguous dataset    mmcompute                        (zero copy: ~ npy)
  h5-gzip     HDF5, chunked, gzip+shuffle mmcompute, h5py slab by slab, dask.array.from_array
  zarr-blosc  zarr v2, blosc lz4+shuffle  mmcompute, zarr-python slab by slab, dask.array.from_zarr

with 1 and 2 workers (mmcompute -j N; dask's threaded scheduler with num_workers=N; zarr-python
with blosc's own threads for N > 1; h5py has no parallel mode and runs once). Warm page cache:
every contender runs once untimed, then the best of --repeat runs is kept. Every mmcompute
answer is checked against numpy's x.mean(axis=(1, 2)) (np.allclose, rtol=1e-12, atol=0), and the
HDF5 and zarr answers must be bitwise equal to mmcompute's answer on the .npy (a design
promise); any failure makes the exit status non-zero. No timing is asserted.

Usage (from the repository root):
  /usr/bin/python3 bench/formats_compare.py --mmcompute build-bench/tools/mmcompute
  /usr/bin/python3 bench/formats_compare.py --quick           # 8 MiB, one repeat: a smoke run
  /usr/bin/python3 bench/formats_compare.py --formats npy,h5-gzip --tools h5py,dask
Writes --out DIR/formats.md (default results/formats/) and formats.json. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
RTOL = 1e-12
DATASET = "/images"
GENERATOR_VERSION = 1  # bump when the pixel recipe changes: cached files are then remade

FORMATS = ["npy", "h5-contig", "h5-gzip", "zarr-blosc"]
TOOLS = ["mmcompute", "h5py", "zarr-python", "dask"]
PEERS = {"h5-gzip": ["h5py", "dask"], "zarr-blosc": ["zarr-python", "dask"]}
SINGLE = {"h5py"}  # no parallel mode: one row, workers = 1
FILE_NAMES = {"npy": "cube.npy", "h5-contig": "cube_contig.h5", "h5-gzip": "cube_gzip.h5",
              "zarr-blosc": "cube_blosc.zarr"}
DESCRIPTIONS = {"npy": "raw .npy (version 1.0)",
                "h5-contig": "HDF5, contiguous dataset",
                "h5-gzip": "HDF5, chunked, gzip + shuffle",
                "zarr-blosc": "zarr v2, blosc lz4 + shuffle"}


def log(msg):
    print(f"[formats] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The data: smooth terrain that drifts from image to image, plus sparse noise, in u8. It
# compresses about 3x with gzip and 1.7x with lz4, so both codecs do real work.

class Terrain:
    def __init__(self, seed, height, width):
        self.seed = seed
        self.y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        self.x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]

    def image(self, i):
        drift = np.float32(0.07 * i)
        hills = np.sin(2 * np.pi * 1.5 * self.x + drift) * np.cos(2 * np.pi * self.y + drift / 2)
        base = (70 + 50 * hills + 30 * (self.x + self.y) + (i % 32)).astype(np.uint8)
        rng = np.random.default_rng([self.seed, i])  # a pure function of (seed, i)
        noise = rng.integers(0, 64, size=base.shape, dtype=np.uint8)
        noise[noise >= 8] = 0  # one pixel in eight gets +0..7
        return base + noise  # at most 70 + 50 + 60 + 31 + 7 = 218: no wrap-around

    def slab(self, start, stop):
        return np.stack([self.image(i) for i in range(start, stop)])


def path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


class NpyWriter:
    def __init__(self, path, shape, params):
        self.f = open(path, "wb", buffering=0)
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})

    def write(self, start, slab):
        # Plain write() calls: pages in large folios, as a real writer program leaves them
        # (see "The page cache" in bench/README.md).
        self.f.write(memoryview(np.ascontiguousarray(slab)).cast("B"))

    def close(self):
        os.fsync(self.f.fileno())
        self.f.close()


class H5Writer:
    def __init__(self, path, shape, params):
        import h5py
        self.file = h5py.File(path, "w")
        if params.get("chunks"):
            self.d = self.file.create_dataset(
                DATASET, shape=shape, dtype=np.uint8, chunks=tuple(params["chunks"]),
                compression="gzip", compression_opts=params["gzip_level"], shuffle=True)
        else:
            self.d = self.file.create_dataset(DATASET, shape=shape, dtype=np.uint8)

    def write(self, start, slab):
        self.d[start:start + slab.shape[0]] = slab

    def close(self):
        self.file.close()


class ZarrWriter:
    def __init__(self, path, shape, params):
        import numcodecs
        import zarr
        compressor = numcodecs.Blosc(cname="lz4", clevel=params["blosc_clevel"],
                                     shuffle=numcodecs.Blosc.SHUFFLE)
        self.z = zarr.open_array(path, mode="w", shape=shape, chunks=tuple(params["chunks"]),
                                 dtype=np.uint8, compressor=compressor, order="C", fill_value=0)

    def write(self, start, slab):
        self.z[start:start + slab.shape[0]] = slab

    def close(self):
        pass


WRITERS = {"npy": NpyWriter, "h5-contig": H5Writer, "h5-gzip": H5Writer,
           "zarr-blosc": ZarrWriter}


def file_params(fmt, args, shape):
    params = {"generator": GENERATOR_VERSION, "seed": args.seed, "shape": list(shape),
              "dtype": "u8"}
    chunks = [min(args.chunk_images, shape[0]), shape[1], shape[2]]
    if fmt == "h5-gzip":
        params.update(chunks=chunks, gzip_level=args.gzip_level, shuffle=True)
    elif fmt == "zarr-blosc":
        params.update(chunks=chunks, blosc_clevel=args.blosc_clevel, cname="lz4", shuffle=True)
    return params


def make_files(args, shape, formats):
    """Makes the files `formats` need in the work folder, in one pass over the generator, or
    reuses those already there whose manifest entry (parameters and on-disk size) matches.
    Each file is written under a temporary name and renamed into place when whole."""
    folder = os.path.join(args.work_dir, "u8_" + "x".join(map(str, shape)))
    os.makedirs(folder, exist_ok=True)
    manifest_path = os.path.join(folder, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):  # kept with --fresh too: other formats' entries stay
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            manifest = {}
    paths = {fmt: os.path.join(folder, FILE_NAMES[fmt]) for fmt in formats}
    todo = []
    for fmt in formats:
        entry = manifest.get(fmt, {})
        ok = (not args.fresh and os.path.exists(paths[fmt]) and
              entry.get("params") == file_params(fmt, args, shape) and
              entry.get("bytes") == path_size(paths[fmt]))
        if ok:
            log(f"reusing {paths[fmt]}")
        else:
            todo.append(fmt)
    if todo:
        log(f"making {', '.join(paths[f] for f in todo)} ({np.prod(shape) / MIB:.0f} MiB "
            f"logical{', gzip is slow: about 30 MB/s' if 'h5-gzip' in todo else ''})")
        terrain = Terrain(args.seed, shape[1], shape[2])
        writers = {}
        for fmt in todo:
            remove(paths[fmt] + ".tmp")
            writers[fmt] = WRITERS[fmt](paths[fmt] + ".tmp", shape,
                                        file_params(fmt, args, shape))
        t0 = time.perf_counter()
        step = args.chunk_images  # slabs follow the chunks: every chunk is written once, whole
        for start in range(0, shape[0], step):
            slab = terrain.slab(start, min(start + step, shape[0]))
            for w in writers.values():
                w.write(start, slab)
        for fmt in todo:
            writers[fmt].close()
            remove(paths[fmt])
            os.rename(paths[fmt] + ".tmp", paths[fmt])
            manifest[fmt] = {"params": file_params(fmt, args, shape),
                             "bytes": path_size(paths[fmt])}
        with open(manifest_path + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(manifest_path + ".tmp", manifest_path)
        log(f"made in {time.perf_counter() - t0:.1f} s")
    return {fmt: {"path": paths[fmt], "bytes": manifest[fmt]["bytes"],
                  "params": manifest[fmt]["params"]} for fmt in formats}


# ---------------------------------------------------------------------------------------------
# The contenders. Each returns (seconds, means). mmcompute is timed as a whole process; the
# Python peers run inside this interpreter, already started and warmed up by the untimed run.

def mmcompute_source(fmt, path):
    return f"{path}:{DATASET}" if fmt.startswith("h5") else path


class Mmcompute:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.out = os.path.join(tmp, "means.npy")
        self.commands = {}

    def __call__(self, fmt, path, workers):
        cmd = [self.binary, "reduce", mmcompute_source(fmt, path), "--op", "mean", "--axis",
               "1,2", "-j", str(workers), "--quiet", "--no-cache", "-o", self.out]
        self.commands[(fmt, workers)] = " ".join(cmd)
        remove(self.out)  # never read an earlier run's answer
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"exit {proc.returncode}: {err}")
        return seconds, np.load(self.out)


def blosc_threads(n):
    """Blosc threads for zarr-python: off for one worker; n of blosc's own threads otherwise.
    numcodecs decides per call when use_threads is None (threads only on the main thread), so
    it is pinned here to say exactly what each row measures."""
    from numcodecs import blosc
    blosc.use_threads = n > 1
    blosc.set_nthreads(max(1, n))


def run_h5py(path, workers):
    import h5py
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        d = f[DATASET]
        step = d.chunks[0] if d.chunks else 1
        means = np.empty(d.shape[0], dtype=np.float64)
        for i in range(0, d.shape[0], step):
            means[i:i + step] = d[i:i + step].mean(axis=(1, 2))
    return time.perf_counter() - t0, means


def run_zarr_python(path, workers):
    import zarr
    blosc_threads(workers)
    try:
        t0 = time.perf_counter()
        z = zarr.open_array(path, mode="r")
        step = z.chunks[0]
        means = np.empty(z.shape[0], dtype=np.float64)
        for i in range(0, z.shape[0], step):
            means[i:i + step] = z[i:i + step].mean(axis=(1, 2))
        return time.perf_counter() - t0, means
    finally:
        blosc_threads(1)


def run_dask_h5(path, workers):
    import dask.array as da
    import h5py
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        d = f[DATASET]
        means = da.from_array(d, chunks=d.chunks).mean(axis=(1, 2)).compute(
            scheduler="threads", num_workers=workers)
    return time.perf_counter() - t0, means


def run_dask_zarr(path, workers):
    import dask.array as da
    blosc_threads(1)  # each dask thread decodes its own chunks
    t0 = time.perf_counter()
    means = da.from_zarr(path).mean(axis=(1, 2)).compute(scheduler="threads",
                                                          num_workers=workers)
    return time.perf_counter() - t0, means


PEER_FNS = {("h5-gzip", "h5py"): run_h5py, ("h5-gzip", "dask"): run_dask_h5,
            ("zarr-blosc", "zarr-python"): run_zarr_python, ("zarr-blosc", "dask"): run_dask_zarr}


# ---------------------------------------------------------------------------------------------
# Checks and reports.

def max_rel_diff(means, exact):
    means = np.asarray(means, dtype=np.float64).ravel()
    if means.shape != exact.shape:
        return float("inf")
    denom = np.maximum(np.abs(exact), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(means - exact) / denom)) if means.size else 0.0


def check(row, means, exact, reference):
    """Fills row["check"]: numpy agreement for everyone, bitwise equality with mmcompute's .npy
    answer for mmcompute on the other formats (and for -j N against -j 1 on .npy)."""
    flat = np.asarray(means).ravel()
    close = flat.shape == exact.shape and bool(
        np.allclose(flat.astype(np.float64), exact, rtol=RTOL, atol=0))
    problems = []
    if not close:
        problems.append(f"differs from numpy (max rel diff {max_rel_diff(flat, exact):.1e})")
    if row["tool"] == "mmcompute" and reference is not None:
        same = (flat.dtype == reference.dtype and flat.shape == reference.shape and
                np.array_equal(flat, reference))
        row["bitwise_vs_npy"] = bool(same)
        if not same:
            why = (f"dtype {flat.dtype} vs {reference.dtype}" if flat.dtype != reference.dtype
                   else f"max rel diff {max_rel_diff(flat, reference):.1e}")
            problems.append(f"not bitwise equal to mmcompute on .npy ({why})")
    row["check"] = "; ".join(problems) if problems else "ok"


def fmt_num(x, spec=".2f"):
    return "–" if x is None else format(x, spec)


def ratio_of(row, gbps):
    """(ratio, what it is) for one row of the table: mmcompute on HDF5/zarr against itself on
    .npy with the same workers; a peer against mmcompute on the same format and workers
    (h5py, which has one worker, against mmcompute -j 1)."""
    fmt, tool, n = row["format"], row["tool"], row["workers"]
    if tool == "mmcompute":
        if fmt == "npy":
            return None, "reference"
        ref = gbps.get(("npy", "mmcompute", n))
        return (row["gbps"] / ref if ref and row.get("gbps") else None,
                f"this / npy mmcompute -j {n}")
    mine = gbps.get((fmt, "mmcompute", n))
    return (mine / row["gbps"] if mine and row.get("gbps") else None,
            f"mmcompute -j {n} / this")


def headline(gbps, jobs, formats):
    def ratio(a, b):
        x, y = gbps.get(a), gbps.get(b)
        return f"{x / y:.2f}x" if x and y else "–"

    def per_jobs(fmt, peer, other_n=None, label=None):
        parts = []
        for n in jobs:
            m = other_n if other_n is not None else n
            name = label(m) if label else f"{m}"
            parts.append(f"-j {n} vs {name}: {ratio((fmt, 'mmcompute', n), (fmt, peer, m))}")
        return ", ".join(parts)

    def threads(m):
        return f"{m} thread{'s' if m > 1 else ''}"

    lines = [
        ("h5-contig", "- HDF5 contiguous / raw .npy (mmcompute, same workers; ~1.0 = zero "
         "copy): " + ", ".join(
             f"-j {n}: {ratio(('h5-contig', 'mmcompute', n), ('npy', 'mmcompute', n))}"
             for n in jobs)),
        ("h5-gzip", "- HDF5 chunked gzip, mmcompute / h5py (one process): " +
         per_jobs("h5-gzip", "h5py", 1, lambda m: "h5py")),
        ("h5-gzip", "- HDF5 chunked gzip, mmcompute / dask from_array (threads): " +
         per_jobs("h5-gzip", "dask", None, threads)),
        ("zarr-blosc", "- zarr blosc-lz4, mmcompute / zarr-python: " +
         per_jobs("zarr-blosc", "zarr-python", None,
                  lambda m: "1 thread" if m == 1 else f"{m} blosc threads")),
        ("zarr-blosc", "- zarr blosc-lz4, mmcompute / dask from_zarr (threads): " +
         per_jobs("zarr-blosc", "dask", None, threads)),
    ]
    return [text for fmt, text in lines if fmt in formats]


def report(meta, files, rows, jobs):
    gbps = {(r["format"], r["tool"], r["workers"]): r["gbps"] for r in rows if r.get("gbps")}
    shape = meta["shape"]
    lines = [f"# Per-image mean over one cube in four formats ({meta['started']})", ""]
    lines.append(f"Command: `{meta['command']}`  ")
    lines.append(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}; "
                 f"load average {meta['load_start']} at start, {meta['load_end']} at end  ")
    lines.append(f"mmcompute {meta['mmcompute']}; Python {meta['python']}, numpy {meta['numpy']},"
                 f" h5py {meta['h5py']} (HDF5 {meta['hdf5']}), zarr {meta['zarr']}, numcodecs "
                 f"{meta['numcodecs']}, dask {meta['dask']}  ")
    lines.append(f"Cube: u8 {' x '.join(map(str, shape))} = {meta['logical_bytes'] / MIB:.0f} "
                 f"MiB logical; GB/s = logical bytes / wall seconds. Warm page cache: one "
                 f"untimed run, then best of {meta['repeat']}. mmcompute is timed as a whole "
                 "process; the Python peers inside this already-started interpreter.")
    lines.append("")
    lines.append("| format | file | chunks | on disk (MiB) | compression |")
    lines.append("| --- | --- | --- | ---: | ---: |")
    for fmt, f in files.items():
        chunks = f["params"].get("chunks")
        shown = os.path.relpath(f["path"], REPO)
        if shown.startswith(".."):
            shown = f["path"]
        lines.append(f"| {fmt}: {DESCRIPTIONS[fmt]} | {shown} | "
                     f"{'x'.join(map(str, chunks)) if chunks else '–'} | "
                     f"{f['bytes'] / MIB:.1f} | {meta['logical_bytes'] / f['bytes']:.2f}x |")
    lines.append("")
    lines.append("| format | tool | workers | seconds | GB/s | ratio | ratio is | check |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        ratio, what = ratio_of(r, gbps)
        if r.get("error"):
            status = "FAILED: " + r["error"].replace("|", "\\|")
        else:
            status = "ok" if r["check"] == "ok" else "**" + r["check"] + "**"
        lines.append(f"| {r['format']} | {r['tool']} | {r['workers']} | "
                     f"{fmt_num(r.get('seconds'), '.3f')} | {fmt_num(r.get('gbps'))} | "
                     f"{fmt_num(ratio)} | {what} | {status} |")
    lines.append("")
    lines.append("Workers: mmcompute `-j N` (forked processes); dask `num_workers=N` with the "
                 "threaded scheduler; zarr-python N > 1 is blosc's own decoding threads "
                 "(`numcodecs.blosc.use_threads`); h5py reads in one thread.")
    lines.append("")
    lines.append("## Headline ratios")
    lines.append("")
    lines.extend(headline(gbps, jobs, files) or ["(only .npy was run)"])
    lines.append("")
    cmds = meta.get("mmcompute_commands")
    if cmds:
        lines.append("mmcompute command lines:")
        lines.append("")
        lines.append("```")
        lines.extend(cmds)
        lines.append("```")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------

def find_binary(explicit):
    if explicit:
        return explicit
    for c in ("build-bench/tools/mmcompute", "build/tools/mmcompute"):
        p = os.path.join(REPO, c)
        if os.path.exists(p):
            return p
    return os.path.join(REPO, "build-bench/tools/mmcompute")


def loadavg():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine_info(binary):
    import dask
    import h5py
    import numcodecs
    import zarr
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        version = subprocess.run([binary, "--version"], capture_output=True,
                                 text=True).stdout.strip() or "?"
    except OSError:
        version = "?"
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "mmcompute": version, "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "zarr": zarr.__version__, "numcodecs": numcodecs.__version__,
            "dask": dask.__version__}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mmcompute", help="the CLI (default build-bench/tools/mmcompute or "
                                        "build/tools/mmcompute)")
    ap.add_argument("--size-mib", type=float, default=None,
                    help="logical cube size in MiB (default 512; 8 with --quick)")
    ap.add_argument("--image", default=None,
                    help="image height,width (default 1024,1024; 512,512 with --quick)")
    ap.add_argument("--chunk-images", type=int, default=8,
                    help="images per HDF5/zarr chunk, chunks = (N, H, W) (default 8)")
    ap.add_argument("--gzip-level", type=int, default=4, help="HDF5 gzip level (default 4)")
    ap.add_argument("--blosc-clevel", type=int, default=5, help="blosc level (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="pixel generator seed (default 1)")
    ap.add_argument("--jobs", default="1,2", help="worker counts (default 1,2)")
    ap.add_argument("--formats", default=",".join(FORMATS),
                    help="from " + ",".join(FORMATS) + " (npy always runs: it is the reference)")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help="from " + ",".join(TOOLS) + " (mmcompute on .npy always runs)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed warm runs after one untimed run, best kept (default 3; 1 with "
                         "--quick)")
    ap.add_argument("--quick", action="store_true",
                    help="8 MiB of 512x512 images, one repeat: a smoke run of a few seconds")
    ap.add_argument("--work-dir", default=os.path.join(REPO, "data", "bench_formats"),
                    help="where the files are made and kept between runs "
                         "(default data/bench_formats/)")
    ap.add_argument("--fresh", action="store_true", help="remake the files even if present")
    ap.add_argument("--out", default=os.path.join(REPO, "results", "formats"),
                    help="folder for formats.md and formats.json (default results/formats/)")
    args = ap.parse_args()
    if args.size_mib is None:
        args.size_mib = 8 if args.quick else 512
    if args.image is None:
        args.image = "512,512" if args.quick else "1024,1024"
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    try:
        args.hw = tuple(int(v) for v in args.image.split(","))
        args.jobs_list = [int(j) for j in args.jobs.split(",")]
    except ValueError as e:
        ap.error(f"--image/--jobs: {e}")
    if len(args.hw) != 2 or min(args.hw) < 1:
        ap.error("--image: two positive integers, height,width")
    if not args.jobs_list or min(args.jobs_list) < 1:
        ap.error("--jobs: positive worker counts")
    if args.chunk_images < 1 or args.repeat < 1:
        ap.error("--chunk-images and --repeat must be positive")
    args.format_list = [f for f in FORMATS if f in args.formats.split(",") or f == "npy"]
    args.tool_list = [t for t in TOOLS if t in args.tools.split(",")]
    for f in args.formats.split(","):
        if f not in FORMATS:
            ap.error(f"--formats: unknown format {f!r} (choose from {', '.join(FORMATS)})")
    for t in args.tools.split(","):
        if t not in TOOLS:
            ap.error(f"--tools: unknown tool {t!r} (choose from {', '.join(TOOLS)})")
    return args


def plan(args):
    """The rows, in table order: (format, tool, workers)."""
    rows = []
    for fmt in args.format_list:
        if fmt == "npy" or "mmcompute" in args.tool_list:
            rows += [(fmt, "mmcompute", n) for n in args.jobs_list]
        for peer in PEERS.get(fmt, []):
            if peer in args.tool_list:
                rows += [(fmt, peer, n) for n in ([1] if peer in SINGLE else args.jobs_list)]
    return rows


def main():
    args = parse_args()
    binary = find_binary(args.mmcompute)
    if not os.path.exists(binary):
        sys.exit(f"formats_compare.py: no mmcompute binary at {binary}; build it or pass "
                 "--mmcompute")
    started = datetime.datetime.now()
    load_start = loadavg()
    log(f"load average at start: {load_start}")
    height, width = args.hw
    n_images = max(1, int(args.size_mib * MIB) // (height * width))
    shape = (n_images, height, width)
    meta = {"started": started.isoformat(timespec="seconds"),
            "command": " ".join([sys.executable] + sys.argv), "repeat": args.repeat,
            "jobs": args.jobs_list, "shape": list(shape), "logical_bytes": int(np.prod(shape)),
            "load_start": load_start, **machine_info(binary)}
    rows_planned = plan(args)
    files = make_files(args, shape, [f for f in args.format_list
                                     if any(fmt == f for fmt, _, _ in rows_planned)])

    exact = np.asarray(np.load(files["npy"]["path"], mmap_mode="r").mean(axis=(1, 2)))
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        mmc = Mmcompute(binary, tmp)
        for fmt, tool, n in rows_planned:
            row = {"format": fmt, "tool": tool, "workers": n}
            rows.append(row)
            path = files[fmt]["path"]
            fn = (lambda p, w, f=fmt: mmc(f, p, w)) if tool == "mmcompute" \
                else PEER_FNS[(fmt, tool)]
            try:
                fn(path, n)  # untimed: fills the page cache, imports, starts dask's pool
                best, means = float("inf"), None
                for _ in range(args.repeat):
                    seconds, result = fn(path, n)
                    if seconds < best:
                        best, means = seconds, np.asarray(result)
            except Exception as e:  # reported in the table, and the exit status says so
                row["error"] = f"{type(e).__name__}: {e}".strip()
                log(f"FAILED {fmt} {tool} workers={n}: {row['error']}")
                continue
            if tool == "mmcompute" and fmt == "npy" and reference is None:
                reference = means.ravel().copy()
            check(row, means, exact, reference if tool == "mmcompute" else None)
            row.update(seconds=best, gbps=meta["logical_bytes"] / best / 1e9)
            log(f"{fmt:10s} {tool:11s} workers={n}: {best:.3f} s, {row['gbps']:.2f} GB/s"
                + ("" if row["check"] == "ok" else f"   <<< {row['check']} >>>"))
        meta["mmcompute_commands"] = list(mmc.commands.values())
    meta["load_end"] = loadavg()
    log(f"load average at end: {meta['load_end']}")

    text = report(meta, files, rows, args.jobs_list)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "formats.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "formats.json"), "w") as f:
        json.dump({"meta": meta, "files": files, "rows": rows}, f, indent=1)
    print(text)
    log(f"wrote {os.path.join(args.out, 'formats.md')} and formats.json")

    failed = [r for r in rows if r.get("error") or r.get("check") != "ok"]
    if failed:
        log(f"!!! {len(failed)} row(s) failed or disagree: " + ", ".join(
            f"{r['format']}/{r['tool']}/{r['workers']}" for r in failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
