#!/usr/bin/python3
"""Reads and writes of one u8 cube in several formats, timed side by side in one run on the same
data, against the Python tools people use for those formats.

READS, the per-image mean (a whole `mmcompute reduce` process against each peer):

  npy          raw .npy                       mmcompute                      (the reference)
  h5-contig    HDF5, contiguous dataset       mmcompute                      (zero copy: ~ npy)
  h5-gzip      HDF5, chunked, gzip+shuffle    mmcompute, h5py slab by slab, dask.array.from_array
  h5-lzf       HDF5, chunked, lzf+shuffle     mmcompute, h5py slab by slab, dask.array.from_array
  zarr-blosc   zarr v2, blosc lz4+shuffle     mmcompute, zarr-python slab by slab, dask.from_zarr
  zarr3-shard  zarr v3, sharded, zstd inner   mmcompute (no peer reads v3 here: against mmcompute
               chunks (mmcompute convert)     on npy and on zarr-blosc)

with 1 and 2 workers (mmcompute -j N; dask's threaded scheduler with num_workers=N; zarr-python
with blosc's own threads for N > 1; h5py has no parallel mode and runs once). Warm page cache:
every contender runs once untimed, then the best of --repeat runs is kept. Every answer is
checked against numpy's x.mean(axis=(1, 2)) (np.allclose, rtol=1e-12, atol=0), and mmcompute's
answers on the other formats must be bitwise equal to its answer on the .npy.

WRITES, the same .npy cube written out (a whole `mmcompute convert` process against each peer's
call), warm input, output removed between runs, best of --repeat; each output read back and
compared with the input:

  zarr-blosc   zarr v2, (8, H, W) chunks, blosc lz4+shuffle   mmcompute -j 1/2, zarr-python
               (blosc 1 and 2 threads)
  h5-gzip      HDF5, (8, H, W) chunks, gzip 4 + shuffle        mmcompute -j 1/2, h5py
  zarr-small   zarr v2, 1x64x64 chunks, zlib, on a smaller     mmcompute -j 1/2, zarr-python
               cube (many small chunks)
  zarr3-shard  zarr v3, (8, H, W) shards of zstd chunks        mmcompute -j 1/2 (against its
                                                               own zarr-blosc write)

No timing is asserted; a failed run or a failed check makes the exit status non-zero.

Usage (from the repository root):
  /usr/bin/python3 bench/formats_compare.py --mmcompute build/tools/mmcompute   # 256 MiB cube
  /usr/bin/python3 bench/formats_compare.py --quick           # 8 MiB, one repeat: a smoke run
  /usr/bin/python3 bench/formats_compare.py --formats npy,h5-gzip --tools h5py,dask --writes none
  /usr/bin/python3 bench/formats_compare.py --no-reads --writes zarr-blosc,h5-gzip
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

FORMATS = ["npy", "h5-contig", "h5-gzip", "h5-lzf", "zarr-blosc", "zarr3-shard"]
TOOLS = ["mmcompute", "h5py", "zarr-python", "dask"]
PEERS = {"h5-gzip": ["h5py", "dask"], "h5-lzf": ["h5py", "dask"],
         "zarr-blosc": ["zarr-python", "dask"]}
SINGLE = {"h5py"}  # no parallel mode: one row, workers = 1
FILE_NAMES = {"npy": "cube.npy", "h5-contig": "cube_contig.h5", "h5-gzip": "cube_gzip.h5",
              "h5-lzf": "cube_lzf.h5", "zarr-blosc": "cube_blosc.zarr",
              "zarr3-shard": "cube_shard.zarr", "npy-small": "cube_small.npy"}
DESCRIPTIONS = {"npy": "raw .npy (version 1.0)",
                "h5-contig": "HDF5, contiguous dataset",
                "h5-gzip": "HDF5, chunked, gzip + shuffle",
                "h5-lzf": "HDF5, chunked, lzf + shuffle (h5py's filter)",
                "zarr-blosc": "zarr v2, blosc lz4 + shuffle",
                "zarr3-shard": "zarr v3, sharded (mmcompute convert)",
                "npy-small": "raw .npy, the first images (input of the small-chunk write)"}

# The writes: each one mmcompute convert command against a peer's call, on the same input.
WRITES = ["zarr-blosc", "h5-gzip", "zarr-small", "zarr3-shard"]
WRITE_PEERS = {"zarr-blosc": "zarr-python", "h5-gzip": "h5py", "zarr-small": "zarr-python"}
WRITE_SINGLE = {("h5-gzip", "h5py"), ("zarr-small", "zarr-python")}  # one row, workers = 1
WRITE_DESCRIPTIONS = {"zarr-blosc": "npy -> zarr v2, blosc lz4 + shuffle",
                      "h5-gzip": "npy -> HDF5, gzip + shuffle",
                      "zarr-small": "npy-small -> zarr v2, small chunks, zlib",
                      "zarr3-shard": "npy -> zarr v3, shards of compressed chunks"}
WRITE_OUT = {"zarr-blosc": "out_blosc.zarr", "h5-gzip": "out_gzip.h5",
             "zarr-small": "out_small.zarr", "zarr3-shard": "out_shard.zarr"}


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


def temp_path(path):
    """Where `path` is made before it is renamed into place: same folder and extension (the
    extension tells mmcompute the format)."""
    return os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))


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
        if params.get("lzf"):
            self.d = self.file.create_dataset(
                DATASET, shape=shape, dtype=np.uint8, chunks=tuple(params["chunks"]),
                compression="lzf", shuffle=True)
        elif params.get("chunks"):
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


WRITERS = {"npy": NpyWriter, "h5-contig": H5Writer, "h5-gzip": H5Writer, "h5-lzf": H5Writer,
           "zarr-blosc": ZarrWriter}
# Made from files of the generator's pass rather than by it: the sharded store by mmcompute's
# own `convert` from the .npy, the small-chunk write's input as the first images of the .npy.
DERIVED = {"zarr3-shard", "npy-small"}


def small_shape(args, shape):
    """The input of the small-chunk write: the cube's first images, --small-mib of them."""
    n = max(1, min(shape[0], int(args.small_mib * MIB) // (shape[1] * shape[2])))
    return (n, shape[1], shape[2])


def shard_layout(args, shape):
    """(shards, inner chunks) of the zarr v3 stores: shards of --chunk-images whole images,
    inner chunks --shard-chunks (default one image cut in four: (1, H/2, W/2))."""
    shards = [min(args.chunk_images, shape[0]), shape[1], shape[2]]
    if args.shard_chunks:
        inner = [int(v) for v in args.shard_chunks.split(",")]
    else:
        inner = [1] + [e // 2 if e % 2 == 0 else e for e in shape[1:]]
    return shards, inner


def file_params(fmt, args, shape):
    params = {"generator": GENERATOR_VERSION, "seed": args.seed, "shape": list(shape),
              "dtype": "u8"}
    chunks = [min(args.chunk_images, shape[0]), shape[1], shape[2]]
    if fmt == "h5-gzip":
        params.update(chunks=chunks, gzip_level=args.gzip_level, shuffle=True)
    elif fmt == "h5-lzf":
        params.update(chunks=chunks, lzf=True, shuffle=True)
    elif fmt == "zarr-blosc":
        params.update(chunks=chunks, blosc_clevel=args.blosc_clevel, cname="lz4", shuffle=True)
    elif fmt == "zarr3-shard":
        shards, inner = shard_layout(args, shape)
        params.update(shards=shards, chunks=inner, codec=args.shard_codec,
                      level=shard_level(args), writer="mmcompute convert --zarr-format 3")
    elif fmt == "npy-small":
        params.update(shape=list(small_shape(args, shape)), first_images_of="npy")
    return params


def shard_level(args):
    return args.blosc_clevel if args.shard_codec == "blosc" else args.zstd_level


def shard_convert_args(args, shards, inner):
    return ["--zarr-format", "3", "--shards", ",".join(map(str, shards)),
            "--chunks", ",".join(map(str, inner)), "--compressor", args.shard_codec,
            "--level", str(shard_level(args))]


def make_derived(fmt, args, shape, npy_path, target):
    """Writes `target` (a temporary name) from the generator's .npy."""
    if fmt == "zarr3-shard":
        shards, inner = shard_layout(args, shape)
        cmd = [args.binary, "convert", npy_path, target, "--quiet"] + \
            shard_convert_args(args, shards, inner)
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace').strip()}")
    elif fmt == "npy-small":
        n, h, w = small_shape(args, shape)
        src = np.load(npy_path, mmap_mode="r")
        out = NpyWriter(target, (n, h, w), {})
        step = max(1, (64 * MIB) // (h * w))
        for i in range(0, n, step):
            out.write(i, src[i:min(n, i + step)])
        out.close()


def make_files(args, shape, formats):
    """Makes the files `formats` need in the work folder, in one pass over the generator, or
    reuses those already there whose manifest entry (parameters and on-disk size) matches.
    Each file is written under a temporary name and renamed into place when whole. The
    sharded zarr v3 store and the small-chunk write's input are made from the .npy after it
    (DERIVED), so `formats` must hold "npy" when it holds either."""
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
        generated = [fmt for fmt in todo if fmt not in DERIVED]
        for fmt in todo:
            remove(temp_path(paths[fmt]))
        for fmt in generated:
            writers[fmt] = WRITERS[fmt](temp_path(paths[fmt]), shape,
                                        file_params(fmt, args, shape))
        t0 = time.perf_counter()
        step = args.chunk_images  # slabs follow the chunks: every chunk is written once, whole
        for start in range(0, shape[0] if writers else 0, step):
            slab = terrain.slab(start, min(start + step, shape[0]))
            for w in writers.values():
                w.write(start, slab)
        for fmt in generated + [f for f in todo if f in DERIVED]:
            if fmt in DERIVED:  # after the .npy is in place
                make_derived(fmt, args, shape, paths["npy"], temp_path(paths[fmt]))
            else:
                writers[fmt].close()
            remove(paths[fmt])
            os.rename(temp_path(paths[fmt]), paths[fmt])
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

def run_timed(cmd):
    """Runs `cmd` (stdout dropped), returning its wall seconds; raises with its stderr if it
    fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"exit {proc.returncode}: {err}")
    return seconds


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
        return run_timed(cmd), np.load(self.out)


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
            ("h5-lzf", "h5py"): run_h5py, ("h5-lzf", "dask"): run_dask_h5,
            ("zarr-blosc", "zarr-python"): run_zarr_python, ("zarr-blosc", "dask"): run_dask_zarr}


# ---------------------------------------------------------------------------------------------
# The writes. Each run returns (seconds, sync seconds or None): mmcompute is timed as a whole
# `convert` process, which makes its output durable before it exits (an fsync of the HDF5 file;
# a syncfs of the zarr store's file system); a peer's call returns with its output in the page
# cache, so after it this script syncs the output's file system (syncfs), timed apart:
# "+ sync" is the peer at mmcompute's durability. The file system is synced before every run
# too, so that sync flushes the peer's output and little else.

def sync_fs(path):
    """syncfs(2) of the file system holding `path` (coreutils `sync -f` when libc lacks it)."""
    import ctypes
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    subprocess.run(["sync", "-f", folder], check=False)


class WriteSpec:
    """What one write makes: its chunks and codec, the mmcompute convert options, the peer's
    compressor, and how its output is checked."""

    def __init__(self, name, args, shape):
        self.name = name
        n, h, w = shape
        self.shape = small_shape(args, shape) if name == "zarr-small" else shape
        self.input_key = "npy-small" if name == "zarr-small" else "npy"
        if name == "zarr-small":
            self.chunks = [int(v) for v in args.small_chunks.split(",")]
        else:
            self.chunks = [min(args.chunk_images, n), h, w]
        self.shards = None
        if name == "zarr-blosc":
            self.codec = {"id": "blosc", "cname": "lz4", "clevel": args.blosc_clevel,
                          "shuffle": 1}
            opts = ["--compressor", "blosc", "--level", str(args.blosc_clevel)]
        elif name == "h5-gzip":
            self.codec = {"gzip": args.gzip_level, "shuffle": True}
            opts = ["--compressor", "zlib", "--level", str(args.gzip_level)]
        elif name == "zarr-small":
            self.codec = {"id": "zlib", "level": args.small_level}
            opts = ["--compressor", "zlib", "--level", str(args.small_level)]
        else:  # zarr3-shard: shards of --chunk-images images, inner chunks as the read store's
            self.shards, self.chunks = shard_layout(args, shape)
            self.codec = {"name": args.shard_codec, "level": shard_level(args)}
            opts = shard_convert_args(args, self.shards, self.chunks)
        if name != "zarr3-shard":
            opts += ["--chunks", ",".join(map(str, self.chunks))]
        self.convert_opts = opts

    def destination(self, out):
        return f"{out}:{DATASET}" if self.name == "h5-gzip" else out

    def describe(self):
        if self.name == "zarr3-shard":
            return (f"shards {'x'.join(map(str, self.shards))} of chunks "
                    f"{'x'.join(map(str, self.chunks))}, {self.codec['name']} level "
                    f"{self.codec['level']}")
        if self.name == "h5-gzip":
            return f"chunks {'x'.join(map(str, self.chunks))}, gzip level {self.codec['gzip']} " \
                   "+ shuffle"
        codec = ", ".join(f"{k} {v}" for k, v in self.codec.items() if k != "id")
        return f"chunks {'x'.join(map(str, self.chunks))}, {self.codec['id']} ({codec})"


class MmcomputeWrite:
    def __init__(self, binary):
        self.binary = binary
        self.commands = {}

    def __call__(self, spec, src, out, workers):
        cmd = [self.binary, "convert", src, spec.destination(out), "-j", str(workers),
               "--quiet"] + spec.convert_opts
        self.commands[(spec.name, workers)] = " ".join(cmd)
        return run_timed(cmd), None


def write_zarr_python(spec, src, out, workers):
    """zarr.open_array(..., compressor=...) then z[...] = x, x the .npy mapped: what a
    zarr-python user writes. Workers N > 1: blosc's own N threads (zlib has none)."""
    import numcodecs
    import zarr
    if spec.codec["id"] == "blosc":
        compressor = numcodecs.Blosc(cname=spec.codec["cname"], clevel=spec.codec["clevel"],
                                     shuffle=numcodecs.Blosc.SHUFFLE)
    else:
        compressor = numcodecs.Zlib(level=spec.codec["level"])
    blosc_threads(workers)
    try:
        t0 = time.perf_counter()
        x = np.load(src, mmap_mode="r")
        z = zarr.open_array(out, mode="w", shape=x.shape, chunks=tuple(spec.chunks),
                            dtype=x.dtype, compressor=compressor, order="C", fill_value=0)
        z[...] = x
        seconds = time.perf_counter() - t0
    finally:
        blosc_threads(1)
    t0 = time.perf_counter()
    sync_fs(out)
    return seconds, time.perf_counter() - t0


def write_h5py(spec, src, out, workers):
    """h5py's create_dataset(data=x, chunks=..., compression="gzip", compression_opts=L,
    shuffle=True), x the .npy mapped. One thread."""
    import h5py
    t0 = time.perf_counter()
    x = np.load(src, mmap_mode="r")
    with h5py.File(out, "w") as f:
        f.create_dataset(DATASET, data=x, chunks=tuple(spec.chunks), compression="gzip",
                         compression_opts=spec.codec["gzip"], shuffle=True)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    sync_fs(out)
    return seconds, time.perf_counter() - t0


WRITE_FNS = {("zarr-blosc", "zarr-python"): write_zarr_python, ("h5-gzip", "h5py"): write_h5py,
             ("zarr-small", "zarr-python"): write_zarr_python}


# Reading the outputs back, independently of the writer where a reader exists here: h5py for
# HDF5, zarr-python for zarr v2, and for zarr v3 (which zarr-python 2.13 cannot read) a shard
# decoder in this file on numcodecs' codecs, then mmcompute's own convert back to .npy.

def compare_slabs(read, x, step):
    """None when read(i, j) equals x[i:j] for every slab, else where it first differs."""
    for i in range(0, x.shape[0], step):
        j = min(x.shape[0], i + step)
        got = np.asarray(read(i, j))
        if got.shape != x[i:j].shape or got.dtype != x.dtype:
            return f"images {i}:{j}: shape {got.shape} {got.dtype}, expected {x[i:j].shape} " \
                   f"{x.dtype}"
        if not np.array_equal(got, x[i:j]):
            bad = int(np.count_nonzero(got != x[i:j]))
            return f"images {i}:{j}: {bad} element(s) differ"
    return None


def verify_zarr_v2(spec, out, x):
    import zarr
    z = zarr.open_array(out, mode="r")
    problems = []
    if tuple(z.chunks) != tuple(spec.chunks):
        problems.append(f"chunks {z.chunks}, expected {tuple(spec.chunks)}")
    config = z.compressor.get_config() if z.compressor is not None else {}
    for key, value in spec.codec.items():
        if config.get(key) != value:
            problems.append(f"compressor {config}, expected {spec.codec}")
            break
    if z.shape != x.shape or z.dtype != x.dtype:
        problems.append(f"array {z.shape} {z.dtype}, expected {x.shape} {x.dtype}")
    else:
        blosc_threads(2)
        try:
            diff = compare_slabs(lambda i, j: z[i:j], x, max(1, z.chunks[0]) * 8)
        finally:
            blosc_threads(1)
        if diff:
            problems.append("data: " + diff)
    return problems


def verify_h5(spec, out, x):
    import h5py
    problems = []
    with h5py.File(out, "r") as f:
        d = f[DATASET]
        if tuple(d.chunks or ()) != tuple(spec.chunks):
            problems.append(f"chunks {d.chunks}, expected {tuple(spec.chunks)}")
        if d.compression != "gzip" or d.compression_opts != spec.codec["gzip"] or not d.shuffle:
            problems.append(f"filters {d.compression} {d.compression_opts} shuffle={d.shuffle}, "
                            f"expected gzip {spec.codec['gzip']} + shuffle")
        if d.shape != x.shape or d.dtype != x.dtype:
            problems.append(f"array {d.shape} {d.dtype}, expected {x.shape} {x.dtype}")
        else:
            diff = compare_slabs(lambda i, j: d[i:j], x, max(1, spec.chunks[0]) * 8)
            if diff:
                problems.append("data: " + diff)
    return problems


class ShardReader:
    """A zarr v3 array of one sharding_indexed codec over bytes + (zstd | blosc | gzip) inner
    chunks, read with numcodecs: an independent check of mmcompute's v3 writer."""

    def __init__(self, path):
        import numcodecs
        with open(os.path.join(path, "zarr.json")) as f:
            self.meta = meta = json.load(f)
        self.path = path
        self.shape = tuple(meta["shape"])
        self.dtype = np.dtype({"uint8": "u1", "uint16": "<u2"}[meta["data_type"]])
        self.shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = meta["codecs"]
        if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
            raise ValueError(f"codecs {codecs}: expected one sharding_indexed")
        conf = codecs[0]["configuration"]
        self.inner = tuple(conf["chunk_shape"])
        self.index_at_end = conf.get("index_location", "end") == "end"
        self.index_crc = any(c["name"] == "crc32c" for c in conf["index_codecs"])
        names = [c["name"] for c in conf["codecs"]]
        if names[0] != "bytes" or len(names) > 2:
            raise ValueError(f"inner codecs {names}: expected bytes then one compressor")
        self.inner_codec_name = names[1] if len(names) == 2 else None
        cc = conf["codecs"][1].get("configuration", {}) if len(names) == 2 else {}
        self.inner_codec = {"zstd": lambda: numcodecs.Zstd(level=cc.get("level", 0)),
                            "blosc": lambda: numcodecs.Blosc(),
                            "gzip": lambda: numcodecs.GZip(level=cc.get("level", 1)),
                            None: lambda: None}[self.inner_codec_name]()
        sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        self.sep = sep
        self.fill = meta.get("fill_value", 0)

    def read(self, i, j):
        out = np.full((j - i,) + self.shape[1:], self.fill, dtype=self.dtype)
        per = [s // c for s, c in zip(self.shard, self.inner)]  # inner chunks per shard
        n_inner = int(np.prod(per))
        for s0 in range(i // self.shard[0], (j - 1) // self.shard[0] + 1):
            grid = [range(-(-e // s)) for e, s in zip(self.shape[1:], self.shard[1:])]
            for rest in np.ndindex(*[len(g) for g in grid]):
                key = self.sep.join(["c", str(s0)] + [str(r) for r in rest])
                file = os.path.join(self.path, key)
                if not os.path.exists(file):
                    continue
                with open(file, "rb") as f:
                    blob = f.read()
                size = 16 * n_inner + (4 if self.index_crc else 0)
                raw = blob[-size:] if self.index_at_end else blob[:size]
                index = np.frombuffer(raw[:16 * n_inner], dtype="<u8").reshape(n_inner, 2)
                origin = [s0 * self.shard[0]] + [r * s for r, s in zip(rest, self.shard[1:])]
                for c, local in enumerate(np.ndindex(*per)):
                    off, nbytes = (int(v) for v in index[c])
                    if off == 2**64 - 1 and nbytes == 2**64 - 1:
                        continue  # an empty chunk: fill value
                    data = blob[off:off + nbytes]
                    if self.inner_codec is not None:
                        data = self.inner_codec.decode(data)
                    chunk = np.frombuffer(bytes(data), dtype=self.dtype).reshape(self.inner)
                    lo = [o + l * e for o, l, e in zip(origin, local, self.inner)]
                    # the part of the chunk inside the array and inside [i, j)
                    src, dst = [], []
                    a, b = max(lo[0], i), min(lo[0] + self.inner[0], j, self.shape[0])
                    if a >= b:
                        continue
                    src.append(slice(a - lo[0], b - lo[0]))
                    dst.append(slice(a - i, b - i))
                    if any(lo[d] >= self.shape[d] for d in (1, 2)):
                        continue
                    for d in (1, 2):
                        hi = min(lo[d] + self.inner[d], self.shape[d])
                        src.append(slice(0, hi - lo[d]))
                        dst.append(slice(lo[d], hi))
                    out[tuple(dst)] = chunk[tuple(src)]
        return out


def verify_zarr_v3(spec, out, x, binary, tmp):
    problems = []
    try:
        r = ShardReader(out)
        if r.shard != tuple(spec.shards) or r.inner != tuple(spec.chunks):
            problems.append(f"shards {r.shard} of chunks {r.inner}, expected "
                            f"{tuple(spec.shards)} of {tuple(spec.chunks)}")
        if r.inner_codec_name != spec.codec["name"]:
            problems.append(f"inner codec {r.inner_codec_name}, expected {spec.codec['name']}")
        if r.shape != x.shape or r.dtype != x.dtype:
            problems.append(f"array {r.shape} {r.dtype}, expected {x.shape} {x.dtype}")
        else:
            diff = compare_slabs(r.read, x, max(1, r.shard[0]) * 4)
            if diff:
                problems.append("numcodecs shard decoder: " + diff)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        problems.append(f"numcodecs shard decoder: {type(e).__name__}: {e}")
    back = os.path.join(tmp, "back.npy")
    remove(back)
    proc = subprocess.run([binary, "convert", out, back, "--quiet"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        problems.append(f"mmcompute convert back to .npy: exit {proc.returncode}: "
                        f"{proc.stderr.decode(errors='replace').strip()}")
    else:
        y = np.load(back, mmap_mode="r")
        diff = compare_slabs(lambda i, j: y[i:j], x, 64)
        if diff:
            problems.append("mmcompute convert back to .npy: " + diff)
        del y
    remove(back)
    return problems


def verify_write(spec, out, src, binary, tmp):
    x = np.load(src, mmap_mode="r")
    if spec.name == "h5-gzip":
        return verify_h5(spec, out, x)
    if spec.name == "zarr3-shard":
        return verify_zarr_v3(spec, out, x, binary, tmp)
    return verify_zarr_v2(spec, out, x)


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


def target(value, threshold, text):
    """' (target TEXT: met)' or ' (target TEXT: NOT met)': printed, never asserted."""
    if value is None:
        return f" (target {text}: not measured)"
    return f" (target {text}: {'met' if value >= threshold else 'NOT met'})"


def headline(gbps, jobs, formats):
    def value(a, b):
        x, y = gbps.get(a), gbps.get(b)
        return x / y if x and y else None

    def ratio(a, b):
        v = value(a, b)
        return f"{v:.2f}x" if v is not None else "–"

    def per_jobs(fmt, peer, other_n=None, label=None):
        parts = []
        for n in jobs:
            m = other_n if other_n is not None else n
            name = label(m) if label else f"{m}"
            parts.append(f"-j {n} vs {name}: {ratio((fmt, 'mmcompute', n), (fmt, peer, m))}")
        return ", ".join(parts)

    def threads(m):
        return f"{m} thread{'s' if m > 1 else ''}"

    def against(fmt, other):
        return ", ".join(f"-j {n}: {ratio((fmt, 'mmcompute', n), (other, 'mmcompute', n))}"
                         for n in jobs)

    per_core = value(("h5-gzip", "mmcompute", 1), ("h5-gzip", "h5py", 1))
    lines = [
        ("h5-contig", "- HDF5 contiguous / raw .npy (mmcompute, same workers; ~1.0 = zero "
         "copy): " + against("h5-contig", "npy")),
        ("h5-gzip", "- HDF5 chunked gzip, per core: mmcompute -j 1 / h5py: "
         f"{ratio(('h5-gzip', 'mmcompute', 1), ('h5-gzip', 'h5py', 1))}"
         + target(per_core, 2.0, ">= 2x")),
        ("h5-gzip", "- HDF5 chunked gzip, mmcompute / h5py (one process): " +
         per_jobs("h5-gzip", "h5py", 1, lambda m: "h5py")),
        ("h5-gzip", "- HDF5 chunked gzip, mmcompute / dask from_array (threads): " +
         per_jobs("h5-gzip", "dask", None, threads)),
        ("h5-lzf", "- HDF5 chunked lzf, mmcompute / h5py (one process): " +
         per_jobs("h5-lzf", "h5py", 1, lambda m: "h5py")),
        ("h5-lzf", "- HDF5 chunked lzf, mmcompute / dask from_array (threads): " +
         per_jobs("h5-lzf", "dask", None, threads)),
        ("zarr-blosc", "- zarr blosc-lz4, mmcompute / zarr-python: " +
         per_jobs("zarr-blosc", "zarr-python", None,
                  lambda m: "1 thread" if m == 1 else f"{m} blosc threads")),
        ("zarr-blosc", "- zarr blosc-lz4, mmcompute / dask from_zarr (threads): " +
         per_jobs("zarr-blosc", "dask", None, threads)),
        ("zarr3-shard", "- zarr v3 sharded / raw .npy (mmcompute, same workers): " +
         against("zarr3-shard", "npy")),
        ("zarr3-shard", "- zarr v3 sharded / zarr v2 blosc-lz4 (mmcompute, same workers): " +
         against("zarr3-shard", "zarr-blosc")),
    ]
    return [text for fmt, text in lines if fmt in formats]


# The write table: on mmcompute rows, "ratio" is the named peer's seconds / this row's seconds
# (above 1: mmcompute is faster), the peer as its user calls it; "vs + sync" the same against
# the peer followed by the sync of its output (mmcompute's durability). The zarr v3 write is
# against mmcompute's own zarr v2 blosc write with the same workers. "scaling" is
# seconds(-j 1) / seconds(this), on rows with more than one worker.

def write_peer(row):
    """(key of the row this one is compared with, its label), or (None, None)."""
    w, tool, n = row["write"], row["tool"], row["workers"]
    if tool != "mmcompute":
        return None, None
    if w == "zarr3-shard":
        return ("zarr-blosc", "mmcompute", n), f"mmcompute v2 blosc -j {n}"
    peer = WRITE_PEERS.get(w)
    if peer is None:
        return None, None
    if (w, peer) in WRITE_SINGLE:
        return (w, peer, 1), peer
    label = "1 blosc thread" if n == 1 else f"{n} blosc threads"
    return (w, peer, n), f"{peer}, {label}"


def write_ratios(row, by_key):
    key, label = write_peer(row)
    ref = by_key.get(key) if key else None
    mine = row.get("seconds")
    ratio = ref["seconds"] / mine if ref and ref.get("seconds") and mine else None
    durable = None
    if ref and ref.get("sync_seconds") is not None and mine:
        durable = ref["seconds_durable"] / mine
    one = by_key.get((row["write"], row["tool"], 1))
    scaling = None
    if row["workers"] > 1 and one and one.get("seconds") and mine:
        scaling = one["seconds"] / mine
    return ratio, (f"{label} s / this s" if label else ("reference" if row["tool"] != "mmcompute"
                                                         else "–")), durable, scaling


def write_headline(by_key, jobs, writes):
    def r(w, n):
        row = by_key.get((w, "mmcompute", n))
        return write_ratios(row, by_key) if row else (None, None, None, None)

    def x(v):
        return "–" if v is None else f"{v:.2f}x"

    lines = []
    top = max(jobs)
    for w in writes:
        peer = WRITE_PEERS.get(w)
        if w == "zarr3-shard":
            parts = [f"-j {n}: {fmt_num(by_key.get((w, 'mmcompute', n), {}).get('gbps'))} GB/s, "
                     f"{x(r(w, n)[0])} the v2 blosc write" for n in jobs]
            lines.append(f"- {WRITE_DESCRIPTIONS[w]}: " + "; ".join(parts))
        elif peer:
            parts = []
            for n in jobs:
                ratio, what, durable, _ = r(w, n)
                parts.append(f"-j {n} vs {what.replace(' s / this s', '')}: {x(ratio)} "
                             f"({x(durable)} against it + sync)")
            if w == "zarr-blosc":
                goal = target(r(w, top)[0], 1.0 + 1e-9, f"mmcompute -j {top} faster than "
                                                       "zarr-python")
            elif w == "h5-gzip":
                goal = target(r(w, top)[0], 2.0, f">= 2x h5py with {top} workers")
            else:
                goal = target(r(w, 1)[0], 1.0 + 1e-9, "-j 1 faster than zarr-python")
            lines.append(f"- {WRITE_DESCRIPTIONS[w]}, mmcompute / {peer}: " + "; ".join(parts)
                         + goal)
        if top > 1:
            scaling = r(w, top)[3]
            lines.append(f"  - scaling {WRITE_DESCRIPTIONS[w]}: seconds(-j 1) / seconds(-j {top}) "
                         f"= {x(scaling)}" + target(scaling, 1.7, ">= 1.7x"))
    return lines


def write_report(meta, specs, wrows, jobs):
    by_key = {(r["write"], r["tool"], r["workers"]): r for r in wrows}
    lines = ["## Writes", ""]
    lines.append(f"Each write timed as a whole: `mmcompute convert` as a process (its output "
                 f"made durable before it exits), the peer's call in this interpreter (file "
                 f"opening included; its output left in the page cache, then its file system "
                 f"synced apart: column \"+ sync\"). Input .npy warm in the page cache, "
                 f"each run a new output in {meta['write_dir']} (the file system synced "
                 f"before it; outputs removed only at the end, since ext4 creates files slowly "
                 f"right after deleting many), one untimed run then best of {meta['repeat']}; "
                 f"the last run's output read back and compared with the input.")
    lines.append("")
    lines.append("| write | input | output |")
    lines.append("| --- | --- | --- |")
    for w, spec in specs.items():
        lines.append(f"| {w}: {WRITE_DESCRIPTIONS[w]} | {'x'.join(map(str, spec.shape))} u8 "
                     f"({int(np.prod(spec.shape)) / MIB:.0f} MiB) | {spec.describe()} |")
    lines.append("")
    lines.append("| write | tool | workers | seconds | GB/s | + sync (s) | on disk (MiB) | ratio "
                 "| ratio is | vs + sync | scaling | check |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    for r in wrows:
        ratio, what, durable, scaling = write_ratios(r, by_key)
        if r.get("error"):
            status = "FAILED: " + r["error"].replace("|", "\\|")
        else:
            status = "ok" if r["check"] == "ok" else "**MISMATCH: " + \
                r["check"].replace("|", "\\|") + "**"
        on_disk = r.get("bytes_on_disk")
        lines.append(f"| {r['write']} | {r['tool']} | {r['workers']} | "
                     f"{fmt_num(r.get('seconds'), '.3f')} | {fmt_num(r.get('gbps'))} | "
                     f"{fmt_num(r.get('sync_seconds'), '.3f')} | "
                     f"{fmt_num(on_disk / MIB if on_disk else None, '.1f')} | {fmt_num(ratio)} | "
                     f"{what} | {fmt_num(durable)} | {fmt_num(scaling)} | {status} |")
    lines.append("")
    lines.append("GB/s = input bytes / seconds. Workers: mmcompute `-j N` (forked processes); "
                 "zarr-python N > 1 is blosc's own compressing threads (zlib has none: one row); "
                 "h5py writes in one thread. \"+ sync\" on a peer row is the time to sync its "
                 "output's file system (syncfs) after its call (seconds + sync = the peer at "
                 "mmcompute's durability).")
    lines.append("")
    lines.append("### Headline ratios (writes)")
    lines.append("")
    lines.extend(write_headline(by_key, jobs, list(specs)))
    lines.append("")
    return lines


def report(meta, files, rows, jobs, specs=None, wrows=None):
    gbps = {(r["format"], r["tool"], r["workers"]): r["gbps"] for r in rows if r.get("gbps")}
    shape = meta["shape"]
    lines = [f"# One cube in several formats: reads and writes ({meta['started']})", ""]
    lines.append(f"Command: `{meta['command']}`  ")
    lines.append(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}; "
                 f"load average {meta['load_start']} at start, {meta['load_end']} at end  ")
    lines.append(f"mmcompute {meta['mmcompute']} ({meta['binary']}, modified "
                 f"{meta['binary_mtime']}); Python {meta['python']}, numpy {meta['numpy']},"
                 f" h5py {meta['h5py']} (HDF5 {meta['hdf5']}), zarr {meta['zarr']}, numcodecs "
                 f"{meta['numcodecs']}, dask {meta['dask']}  ")
    others = meta.get("others_cpu") or {}
    if others:
        lines.append("CPU taken by other processes (machine-wide busy time less this script's "
                     "and its children's): " + "; ".join(
                         f"{k} {o['others_cpu_seconds']:.1f} CPU s over {o['wall_seconds']:.1f} s"
                         f" (≈ {o['others_cores']:.2f} of {meta['cpus']} cores), steal "
                         f"{o['steal_seconds']:.1f} s" for k, o in others.items()) +
                     " — above ~0.1 cores, the figures of that section are disturbed  ")
    if meta.get("binary_changed"):
        lines.append("**The mmcompute binary changed during the run: the figures mix two "
                     "builds; run again.**  ")
    lines.append(f"Cube: u8 {' x '.join(map(str, shape))} = {meta['logical_bytes'] / MIB:.0f} "
                 f"MiB logical; GB/s = logical bytes / wall seconds. Warm page cache: one "
                 f"untimed run, then best of {meta['repeat']}. mmcompute is timed as a whole "
                 "process; the Python peers inside this already-started interpreter.")
    lines.append("")
    lines.append("| file | path | chunks | on disk (MiB) | compression |")
    lines.append("| --- | --- | --- | ---: | ---: |")
    for fmt, f in files.items():
        chunks = f["params"].get("chunks")
        shards = f["params"].get("shards")
        shown = os.path.relpath(f["path"], REPO)
        if shown.startswith(".."):
            shown = f["path"]
        layout = "x".join(map(str, chunks)) if chunks else "–"
        if shards:
            layout = f"shards {'x'.join(map(str, shards))} of {layout}, " \
                     f"{f['params']['codec']} {f['params']['level']}"
        logical = int(np.prod(f["params"]["shape"]))
        lines.append(f"| {fmt}: {DESCRIPTIONS[fmt]} | {shown} | {layout} | "
                     f"{f['bytes'] / MIB:.1f} | {logical / f['bytes']:.2f}x |")
    lines.append("")
    if rows:
        lines.append("## Reads: per-image mean")
        lines.append("")
        lines.append("| format | tool | workers | seconds | GB/s | ratio | ratio is | check |")
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
        for r in rows:
            ratio, what = ratio_of(r, gbps)
            if r.get("error"):
                status = "FAILED: " + r["error"].replace("|", "\\|")
            else:
                status = "ok" if r["check"] == "ok" else "**MISMATCH: " + r["check"] + "**"
            lines.append(f"| {r['format']} | {r['tool']} | {r['workers']} | "
                         f"{fmt_num(r.get('seconds'), '.3f')} | {fmt_num(r.get('gbps'))} | "
                         f"{fmt_num(ratio)} | {what} | {status} |")
        lines.append("")
        lines.append("Workers: mmcompute `-j N` (forked processes); dask `num_workers=N` with "
                     "the threaded scheduler; zarr-python N > 1 is blosc's own decoding threads "
                     "(`numcodecs.blosc.use_threads`); h5py reads in one thread.")
        lines.append("")
        lines.append("### Headline ratios (reads)")
        lines.append("")
        lines.extend(headline(gbps, jobs, files) or ["(only .npy was run)"])
        lines.append("")
    if wrows:
        lines.extend(write_report(meta, specs, wrows, jobs))
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


def binary_stamp(binary):
    """The binary's mtime and size: compared at the end to catch a rebuild during the run."""
    try:
        st = os.stat(binary)
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return None


def loadavg():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_snapshot():
    """(wall seconds, CPU seconds busy machine-wide, of them stolen by the hypervisor, CPU
    seconds of this process and its waited-for children): two snapshots tell how much CPU
    other processes took meanwhile, the shared machine's noise."""
    hz = os.sysconf("SC_CLK_TCK")
    busy = steal = 0.0
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz
        steal = (v[7] if len(v) > 7 else 0) / hz
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return (time.perf_counter(), busy, steal,
            t.user + t.system + t.children_user + t.children_system)


def others_cpu(before, after):
    """CPU used by other processes between two snapshots, as a dict."""
    wall = after[0] - before[0]
    others = max(0.0, (after[1] - before[1]) - (after[3] - before[3]))
    steal = after[2] - before[2]
    return {"wall_seconds": round(wall, 2), "others_cpu_seconds": round(others, 2),
            "others_cores": round(others / wall, 2) if wall > 0 else None,
            "steal_seconds": round(steal, 2)}


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
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(binary)).isoformat(
        timespec="seconds")
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "mmcompute": version, "binary": binary, "binary_mtime": mtime,
            "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "zarr": zarr.__version__, "numcodecs": numcodecs.__version__,
            "dask": dask.__version__}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mmcompute", help="the CLI (default build-bench/tools/mmcompute or "
                                        "build/tools/mmcompute)")
    ap.add_argument("--size-mib", type=float, default=None,
                    help="logical cube size in MiB (default 256; 8 with --quick)")
    ap.add_argument("--image", default=None,
                    help="image height,width (default 1024,1024; 512,512 with --quick)")
    ap.add_argument("--chunk-images", type=int, default=8,
                    help="images per HDF5/zarr chunk, chunks = (N, H, W), and per zarr v3 shard "
                         "(default 8)")
    ap.add_argument("--gzip-level", type=int, default=4, help="HDF5 gzip level (default 4)")
    ap.add_argument("--blosc-clevel", type=int, default=5, help="blosc level (default 5)")
    ap.add_argument("--shard-codec", default="zstd", choices=["zstd", "blosc"],
                    help="zarr v3: the inner chunks' compressor (default zstd; blosc is lz4 + "
                         "shuffle at --blosc-clevel)")
    ap.add_argument("--zstd-level", type=int, default=3, help="zarr v3 zstd level (default 3)")
    ap.add_argument("--shard-chunks", default=None,
                    help="zarr v3: inner chunk shape, e.g. 1,512,512 (default 1,H/2,W/2); "
                         "shards are (--chunk-images, H, W)")
    ap.add_argument("--small-mib", type=float, default=None,
                    help="the small-chunk write's input: the cube's first images, this many MiB "
                         "(default 32; 2 with --quick)")
    ap.add_argument("--small-chunks", default="1,64,64",
                    help="the small-chunk write's chunks (default 1,64,64)")
    ap.add_argument("--small-level", type=int, default=None,
                    help="the small-chunk write's zlib level (default --gzip-level)")
    ap.add_argument("--seed", type=int, default=1, help="pixel generator seed (default 1)")
    ap.add_argument("--jobs", default="1,2", help="worker counts (default 1,2)")
    ap.add_argument("--formats", default=",".join(FORMATS),
                    help="reads, from " + ",".join(FORMATS) + " (npy always runs: it is the "
                         "reference)")
    ap.add_argument("--no-reads", action="store_true", help="skip the reads (writes only)")
    ap.add_argument("--writes", default=",".join(WRITES),
                    help="writes, from " + ",".join(WRITES) + ", or none (default: all)")
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
    ap.add_argument("--write-dir", default=None,
                    help="where the writes put their outputs (a temporary folder inside it, "
                         "removed at the end; default: the work folder, same disk as the input)")
    ap.add_argument("--fresh", action="store_true", help="remake the files even if present")
    ap.add_argument("--out", default=os.path.join(REPO, "results", "formats"),
                    help="folder for formats.md and formats.json (default results/formats/)")
    args = ap.parse_args()
    if args.size_mib is None:
        args.size_mib = 8 if args.quick else 256
    if args.small_mib is None:
        args.small_mib = 2 if args.quick else 32
    if args.small_level is None:
        args.small_level = args.gzip_level
    if args.image is None:
        args.image = "512,512" if args.quick else "1024,1024"
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    try:
        args.hw = tuple(int(v) for v in args.image.split(","))
        args.jobs_list = [int(j) for j in args.jobs.split(",")]
        small = [int(v) for v in args.small_chunks.split(",")]
        inner = [int(v) for v in args.shard_chunks.split(",")] if args.shard_chunks else None
    except ValueError as e:
        ap.error(f"--image/--jobs/--small-chunks/--shard-chunks: {e}")
    if len(args.hw) != 2 or min(args.hw) < 1:
        ap.error("--image: two positive integers, height,width")
    if len(small) != 3 or min(small) < 1 or (inner and (len(inner) != 3 or min(inner) < 1)):
        ap.error("--small-chunks/--shard-chunks: three positive integers")
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
    chosen = [] if args.writes == "none" else args.writes.split(",")
    for w in chosen:
        if w not in WRITES:
            ap.error(f"--writes: unknown write {w!r} (choose from {', '.join(WRITES)}, none)")
    args.write_list = [w for w in WRITES if w in chosen]
    return args


def plan(args):
    """The read rows, in table order: (format, tool, workers)."""
    if args.no_reads:
        return []
    rows = []
    for fmt in args.format_list:
        if fmt == "npy" or "mmcompute" in args.tool_list:
            rows += [(fmt, "mmcompute", n) for n in args.jobs_list]
        for peer in PEERS.get(fmt, []):
            if peer in args.tool_list:
                rows += [(fmt, peer, n) for n in ([1] if peer in SINGLE else args.jobs_list)]
    return rows


def plan_writes(args):
    """The write rows, in table order: (write, tool, workers). The zarr v3 write's ratio is
    against mmcompute's zarr v2 blosc write: "–" when that write is not chosen."""
    rows = []
    for w in args.write_list:
        if "mmcompute" in args.tool_list:
            rows += [(w, "mmcompute", n) for n in args.jobs_list]
        peer = WRITE_PEERS.get(w)
        if peer and peer in args.tool_list:
            rows += [(w, peer, n) for n in ([1] if (w, peer) in WRITE_SINGLE
                                            else args.jobs_list)]
    return rows


def warm(path):
    """Reads the file through the page cache with read() (fills it; large folios)."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(16 * MIB)
        while f.readinto(buf):
            pass


def run_reads(args, binary, files, rows_planned, meta, tmp):
    exact = np.asarray(np.load(files["npy"]["path"], mmap_mode="r").mean(axis=(1, 2)))
    rows, reference = [], None
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
        log(f"{fmt:11s} {tool:11s} workers={n}: {best:.3f} s, {row['gbps']:.2f} GB/s"
            + ("" if row["check"] == "ok" else f"   <<< MISMATCH: {row['check']} >>>"))
    return rows, list(mmc.commands.values())


def run_writes(args, binary, files, specs, wplan, tmp):
    write_root = args.write_dir or args.work_dir
    os.makedirs(write_root, exist_ok=True)
    out_dir = tempfile.mkdtemp(prefix="writes-", dir=write_root)
    rows = []
    mmc = MmcomputeWrite(binary)
    try:
        for w, tool, n in wplan:
            spec = specs[w]
            row = {"write": w, "tool": tool, "workers": n}
            rows.append(row)
            src = files[spec.input_key]["path"]
            fn = mmc if tool == "mmcompute" else WRITE_FNS[(w, tool)]
            best = best_durable = float("inf")
            sync_best = None
            try:
                warm(src)
                for run in range(1 + args.repeat):  # the first run untimed
                    # Each run writes a new output, and outputs are removed only at the end:
                    # ext4 scans past recently deleted inodes when it allocates (its
                    # recently_deleted check), so creating thousands of chunk files right
                    # after deleting the last run's thousands measured that scan (40 % of the
                    # samples of a 1x64x64-chunk write, which then did not scale with workers).
                    out = os.path.join(out_dir, f"r{run}-{tool}-{n}-" + WRITE_OUT[w])
                    sync_fs(out_dir)  # the last run's writeback is not this one's
                    seconds, sync_seconds = fn(spec, src, out, n)
                    if run == 0:
                        continue
                    best = min(best, seconds)
                    if sync_seconds is not None:
                        if seconds + sync_seconds < best_durable:
                            best_durable, sync_best = seconds + sync_seconds, sync_seconds
                size = path_size(out)
                problems = verify_write(spec, out, src, binary, tmp)
            except Exception as e:  # reported in the table, and the exit status says so
                row["error"] = f"{type(e).__name__}: {e}".strip()
                log(f"FAILED write {w} {tool} workers={n}: {row['error']}")
                continue
            nbytes = int(np.prod(spec.shape))
            row.update(seconds=best, gbps=nbytes / best / 1e9, bytes_on_disk=size,
                       input_bytes=nbytes, check="; ".join(problems) if problems else "ok")
            if sync_best is not None:
                row.update(sync_seconds=sync_best, seconds_durable=best_durable)
            log(f"write {w:11s} {tool:11s} workers={n}: {best:.3f} s, {row['gbps']:.2f} GB/s"
                + (f" (+ sync {sync_best:.3f} s)" if sync_best is not None else "")
                + f", {size / MIB:.1f} MiB"
                + ("" if row["check"] == "ok" else f"   <<< MISMATCH: {row['check']} >>>"))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return rows, list(mmc.commands.values())


def main():
    args = parse_args()
    binary = find_binary(args.mmcompute)
    if not os.path.exists(binary):
        sys.exit(f"formats_compare.py: no mmcompute binary at {binary}; build it or pass "
                 "--mmcompute")
    args.binary = binary
    stamp = binary_stamp(binary)
    started = datetime.datetime.now()
    load_start = loadavg()
    log(f"load average at start: {load_start}")
    height, width = args.hw
    n_images = max(1, int(args.size_mib * MIB) // (height * width))
    shape = (n_images, height, width)
    rows_planned = plan(args)
    wplan = plan_writes(args)
    specs = {w: WriteSpec(w, args, shape) for w in args.write_list}
    meta = {"started": started.isoformat(timespec="seconds"),
            "command": " ".join([sys.executable] + sys.argv), "repeat": args.repeat,
            "jobs": args.jobs_list, "shape": list(shape), "logical_bytes": int(np.prod(shape)),
            "load_start": load_start, **machine_info(binary)}
    need = {"npy"} | {f for f, _, _ in rows_planned} | {s.input_key for s in specs.values()}
    files = make_files(args, shape, [f for f in FORMATS + ["npy-small"] if f in need])

    meta["others_cpu"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = cpu_snapshot()
        rows, read_cmds = run_reads(args, binary, files, rows_planned, meta, tmp)
        if rows:
            meta["others_cpu"]["reads"] = others_cpu(before, cpu_snapshot())
        if wplan:
            meta["write_dir"] = args.write_dir or args.work_dir
            before = cpu_snapshot()
            wrows, write_cmds = run_writes(args, binary, files, specs, wplan, tmp)
            meta["others_cpu"]["writes"] = others_cpu(before, cpu_snapshot())
        else:
            wrows, write_cmds = [], []
    for section, o in meta["others_cpu"].items():
        log(f"other processes during the {section}: {o['others_cpu_seconds']:.1f} CPU s over "
            f"{o['wall_seconds']:.1f} s (≈ {o['others_cores']:.2f} cores), steal "
            f"{o['steal_seconds']:.1f} s")
        meta["mmcompute_commands"] = read_cmds + write_cmds
    meta["load_end"] = loadavg()
    meta["binary_changed"] = binary_stamp(binary) != stamp
    log(f"load average at end: {meta['load_end']}")
    if meta["binary_changed"]:
        log(f"!!! {binary} changed during the run (rebuilt?): run again")

    text = report(meta, files, rows, args.jobs_list, specs, wrows)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "formats.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "formats.json"), "w") as f:
        json.dump({"meta": meta, "files": files, "rows": rows,
                   "writes": {w: {"input": spec.input_key, "shape": list(spec.shape),
                                  "chunks": spec.chunks, "shards": spec.shards,
                                  "codec": spec.codec, "mmcompute_options": spec.convert_opts}
                              for w, spec in specs.items()},
                   "write_rows": wrows}, f, indent=1)
    print(text)
    log(f"wrote {os.path.join(args.out, 'formats.md')} and formats.json")

    failed = [f"{r['format']}/{r['tool']}/{r['workers']}" for r in rows
              if r.get("error") or r.get("check") != "ok"]
    failed += [f"write {r['write']}/{r['tool']}/{r['workers']}" for r in wrows
               if r.get("error") or r.get("check") != "ok"]
    if failed:
        log(f"!!! {len(failed)} row(s) failed or disagree: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
