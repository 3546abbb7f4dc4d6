#!/usr/bin/python3
"""Cross-checks mmcompute's zarr v3 reader and writer against zarrita and a spec-only decoder.

Usage:
  check_zarrita.py --cli PATH_TO_mmcompute --node-dir DIR --work TMPDIR
                   [--only read|bad|write|fixtures] [--node PATH_TO_node] [-v]

DIR holds node_modules with zarrita (npm ci from this folder's package-lock.json). The parts:
  fixtures  the fixtures themselves: zarrita (read_store.mjs) reads back every zarrita store
            and every make_sharded.py store it can read, and this file's spec-only decoder
            (bytes, transpose, gzip, zlib, crc32c, sharding_indexed; not zstd or blosc)
            decodes every store it can; each must give the case's .bin exactly. Needs no
            mmcompute.
  read      `mmcompute convert CASE.zarr out.npy` gives the .bin bit for bit, and
            `mmcompute reduce` (mean, min, max, sum) agrees with numpy on it.
  bad       damaged sharded stores: convert and reduce fail with exit 1, one line on stderr
            that names the damage, and leave no output file.
  write     `mmcompute convert IN.npy OUT.zarr --zarr-format 3` (with and without --shards,
            every --compressor, several dtypes, big-endian and Fortran-order inputs, edge
            chunks and shards, all-zero regions) is read back by zarrita and by the spec-only
            decoder, and `mmcompute convert OUT.zarr back.npy` gives the input back.
Without --only, all four run. float16 stores are never read with zarrita (it needs
Float16Array, which Node 20 lacks): the spec-only decoder and mmcompute's round trip check
them. Fixtures are written once into TMPDIR/fx by write_fixtures.mjs (zarrita) and
make_sharded.py (pure Python). Exits 1 when anything does not match, naming the
part and the case; prints "check_zarrita: N passed, N failed" last.
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MISSING = 2**64 - 1
TIMEOUT = 120

DATA_TYPES = {
    "bool": "|b1", "int8": "|i1", "uint8": "|u1", "int16": "<i2", "uint16": "<u2",
    "int32": "<i4", "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "float16": "<f2",
    "float32": "<f4", "float64": "<f8",
}


def zarrita_reads(dtype):
    """False for float16: zarrita 0.7.5 hands float16 out as a Float16Array, which Node 20 does
    not have. Those stores are checked by the spec-only decoder and mmcompute's round trip."""
    dtype = np.dtype(dtype)
    return not (dtype.kind == "f" and dtype.itemsize == 2)


class Unsupported(Exception):
    """A codec the spec-only decoder does not implement (zstd, blosc)."""


# ---------------------------------------------------------------------------------------------
# Results.

class Results:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = []
        self.notes = []
        self.verbose = verbose

    def ok(self, part, case, what=""):
        self.passed += 1
        if self.verbose:
            print(f"  ok   [{part}] {case}{': ' + what if what else ''}")

    def fail(self, part, case, message):
        self.failed.append(f"[{part}] {case}: {message}")
        print(f"  FAIL [{part}] {case}: {message}", flush=True)

    def note(self, part, case, message):
        self.notes.append(f"[{part}] {case}: {message}")
        if self.verbose:
            print(f"  note [{part}] {case}: {message}")


def run(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL, **kw)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, -999, e.stdout or "",
                                           f"timed out after {TIMEOUT} s")


def short(text, n=400):
    text = " | ".join(line for line in (text or "").strip().splitlines() if line.strip())
    return text if len(text) <= n else text[:n] + "..."


# ---------------------------------------------------------------------------------------------
# CRC-32C and a decoder written from the zarr v3 spec (independent of mmcompute and zarrita).

# The spec-only CRC-32C of the independent shard writer (tests/fixtures/make_sharded.py).
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from make_sharded import crc32c  # noqa: E402

assert crc32c(b"123456789") == 0xE3069283


def parse_fill(value, dtype):
    if isinstance(value, str):
        if value.startswith("0x"):
            return np.array([int(value, 16)], dtype=f"<u{dtype.itemsize}").view(dtype)[0]
        return dtype.type({"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}[value])
    return dtype.type(value)


def transpose_order(config, ndim):
    order = config.get("order", "C")
    if order == "C":
        return list(range(ndim))
    if order == "F":
        return list(range(ndim - 1, -1, -1))
    return list(order)


def decode_chunk(data, codecs, shape, dtype, fill):
    """Decodes one chunk's bytes with a v3 codec list into an array of `shape`."""
    codecs = list(codecs)
    a2a = []
    while codecs and codecs[0]["name"] == "transpose":
        a2a.append(transpose_order(codecs.pop(0).get("configuration", {}), len(shape)))
    if not codecs:
        raise ValueError("no array-to-bytes codec")
    a2b, b2b = codecs[0], codecs[1:]
    for codec in reversed(b2b):
        name = codec["name"]
        if name == "gzip":
            data = gzip.decompress(data)
        elif name in ("zlib", "numcodecs.zlib"):
            data = zlib.decompress(data)
        elif name == "crc32c":
            if len(data) < 4:
                raise ValueError("crc32c: fewer than 4 bytes")
            want = struct.unpack("<I", data[-4:])[0]
            data = data[:-4]
            if crc32c(data) != want:
                raise ValueError("crc32c mismatch")
        else:
            raise Unsupported(name)
    enc_shape = list(shape)
    for order in a2a:
        enc_shape = [enc_shape[i] for i in order]
    if a2b["name"] == "bytes":
        endian = a2b.get("configuration", {}).get("endian", "little")
        dt = dtype.newbyteorder("<" if endian == "little" else ">")
        n = int(np.prod(enc_shape, dtype=np.int64))
        if len(data) != n * dt.itemsize:
            raise ValueError(f"bytes: {len(data)} bytes for {n} elements of {dt.str}")
        a = np.frombuffer(data, dtype=dt).reshape(enc_shape).astype(dtype)
    elif a2b["name"] == "sharding_indexed":
        a = decode_shard(data, a2b["configuration"], enc_shape, dtype, fill)
    else:
        raise Unsupported(a2b["name"])
    for order in reversed(a2a):
        a = np.transpose(a, np.argsort(order))
    return a


def decode_shard(data, config, shard_shape, dtype, fill):
    inner = config["chunk_shape"]
    cps = [s // c for s, c in zip(shard_shape, inner)]
    index_codecs = config.get("index_codecs", [{"name": "bytes"}, {"name": "crc32c"}])
    n = int(np.prod(cps, dtype=np.int64))
    size = 16 * n
    for c in index_codecs:
        if c["name"] == "crc32c":
            size += 4
        elif c["name"] not in ("bytes", "transpose"):
            raise Unsupported(f"index codec {c['name']}")
    if len(data) < size:
        raise ValueError(f"shard of {len(data)} bytes is shorter than its index ({size})")
    start = config.get("index_location", "end") == "start"
    raw = data[:size] if start else data[len(data) - size:]
    index = decode_chunk(raw, index_codecs, cps + [2], np.dtype("<u8"), 0)
    out = np.full(shard_shape, fill, dtype=dtype)
    for icoord in np.ndindex(*cps):
        off, nbytes = (int(v) for v in index[icoord])
        if off == MISSING and nbytes == MISSING:
            continue
        if off + nbytes > len(data):
            raise ValueError(f"inner chunk {icoord} at offset {off} + {nbytes} past the end")
        box = tuple(slice(i * c, (i + 1) * c) for i, c in zip(icoord, inner))
        out[box] = decode_chunk(data[off:off + nbytes], config["codecs"], inner, dtype, fill)
    return out


def read_store_spec(store):
    """The whole array of a zarr v3 store, decoded by this file's spec-only decoder."""
    with open(os.path.join(store, "zarr.json")) as f:
        meta = json.load(f)
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise ValueError("not a zarr v3 array")
    dtype = np.dtype(DATA_TYPES[meta["data_type"]])
    shape = meta["shape"]
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    fill = parse_fill(meta["fill_value"], dtype)
    kenc = meta["chunk_key_encoding"]
    sep = kenc.get("configuration", {}).get("separator", "/" if kenc["name"] == "default" else ".")
    out = np.full(shape, fill, dtype=dtype)
    grid = [-(-s // c) for s, c in zip(shape, chunks)]
    for coord in np.ndindex(*grid):
        if kenc["name"] == "default":
            key = sep.join(["c"] + [str(c) for c in coord])
        else:
            key = sep.join(str(c) for c in coord) or "0"
        path = os.path.join(store, key)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        chunk = decode_chunk(data, meta["codecs"], chunks, dtype, fill)
        lo = [c * s for c, s in zip(coord, chunks)]
        box = tuple(slice(l, min(l + s, n)) for l, s, n in zip(lo, chunks, shape))
        out[box] = chunk[tuple(slice(0, b.stop - b.start) for b in box)]
    return out, meta


def le_bytes(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()


def first_difference(got, want, dtype):
    g = np.frombuffer(got, dtype=np.uint8)
    w = np.frombuffer(want, dtype=np.uint8)
    if g.size != w.size:
        return f"{g.size} bytes, expected {w.size}"
    diff = np.flatnonzero(g != w)
    if diff.size == 0:
        return None
    item = int(diff[0]) // dtype.itemsize
    gv = np.frombuffer(got, dtype=dtype)[item]
    wv = np.frombuffer(want, dtype=dtype)[item]
    return (f"{diff.size} bytes differ; first at element {item} (flat, C order): "
            f"got {gv!r}, expected {wv!r}")


# ---------------------------------------------------------------------------------------------
# The fixtures.

class Env:
    def __init__(self, args):
        self.cli = os.path.abspath(args.cli) if args.cli else None
        self.node = args.node or shutil.which("node") or "/usr/bin/node"
        self.work = os.path.abspath(args.work)
        self.fx = os.path.join(self.work, "fx")
        self.js = os.path.join(self.work, "js")
        node_modules = os.path.join(os.path.abspath(args.node_dir), "node_modules")
        if not os.path.isdir(os.path.join(node_modules, "zarrita")):
            sys.exit(f"check_zarrita: no zarrita in {node_modules} (npm ci in tests/zarr_v3)")
        # Node resolves "zarrita" from the script's own folder: run copies of the scripts
        # from a folder whose node_modules is the one given.
        os.makedirs(self.js, exist_ok=True)
        for name in ("write_fixtures.mjs", "read_store.mjs", "package.json"):
            shutil.copyfile(os.path.join(HERE, name), os.path.join(self.js, name))
        link = os.path.join(self.js, "node_modules")
        if os.path.islink(link) or os.path.exists(link):
            if os.path.realpath(link) != os.path.realpath(node_modules):
                os.remove(link)
        if not os.path.exists(link):
            os.symlink(node_modules, link)

    def read_stores(self, pairs):
        """Runs read_store.mjs once over [(store, out_bin), ...]; returns a list of
        (info dict or None, error text), one per pair."""
        if not pairs:
            return []
        cmd = [self.node, os.path.join(self.js, "read_store.mjs")]
        for store, out in pairs:
            cmd += [store, out]
        r = run(cmd)
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        if len(lines) != len(pairs):
            err = f"read_store.mjs exit {r.returncode}: {short(r.stderr)}"
            return [(None, err)] * len(pairs)
        return [(None, x["error"]) if "error" in x else (x, "") for x in lines]


def make_fixtures(env):
    shutil.rmtree(env.fx, ignore_errors=True)
    os.makedirs(env.fx)
    t0 = time.monotonic()
    r = run([env.node, os.path.join(env.js, "write_fixtures.mjs"), env.fx])
    if r.returncode != 0:
        sys.exit(f"check_zarrita: write_fixtures.mjs failed: {r.stderr.strip()}")
    t1 = time.monotonic()
    r = run([sys.executable, os.path.join(HERE, "..", "fixtures", "make_sharded.py"), env.fx])
    if r.returncode != 0:
        sys.exit(f"check_zarrita: make_sharded.py failed: {r.stderr.strip()}")
    t2 = time.monotonic()
    print(f"fixtures: write_fixtures.mjs {t1 - t0:.2f} s, make_sharded.py {t2 - t1:.2f} s")


def load_cases(env):
    cases = []
    for f in sorted(os.listdir(env.fx)):
        if f.endswith(".json"):
            name = f[:-5]
            with open(os.path.join(env.fx, f)) as fh:
                info = json.load(fh)
            with open(os.path.join(env.fx, info["bin"]), "rb") as fh:
                expected = fh.read()
            cases.append((name, info, expected))
    return cases


def expected_array(info, expected):
    return np.frombuffer(expected, dtype=np.dtype(info["dtype"])).reshape(info["shape"])


# ---------------------------------------------------------------------------------------------
# Part fixtures: are the fixtures themselves sound?

def part_fixtures(env, res):
    print("part fixtures: zarrita and the spec-only decoder read the fixtures")
    cases = load_cases(env)
    readable = [c for c in cases if c[1].get("zarrita_readable", True)]
    outs = {name: os.path.join(env.work, f"zarrita_{name}.bin") for name, _, _ in readable}
    reads = dict(zip([c[0] for c in readable],
                     env.read_stores([(os.path.join(env.fx, f"{n}.zarr"), outs[n])
                                      for n, _, _ in readable])))
    for name, info, expected in cases:
        store = os.path.join(env.fx, f"{name}.zarr")
        dtype = np.dtype(info["dtype"])
        if name in reads:
            got_info, err = reads[name]
            out = outs[name]
            if got_info is None:
                res.fail("fixtures", name, f"read_store.mjs failed: {err}")
            else:
                with open(out, "rb") as f:
                    diff = first_difference(f.read(), expected, dtype)
                if got_info["dtype"] != info["dtype"] or got_info["shape"] != info["shape"]:
                    res.fail("fixtures", name, f"zarrita sees {got_info['dtype']} "
                             f"{got_info['shape']}, expected {info['dtype']} {info['shape']}")
                elif diff:
                    res.fail("fixtures", name, f"zarrita's read differs from the .bin: {diff}")
                elif (got_info["attributes"] != info.get("attributes", {}) or
                      got_info["dimension_names"] != info.get("dimension_names")):
                    res.fail("fixtures", name, "zarrita sees other attributes or dimension_names")
                else:
                    res.ok("fixtures", name, "zarrita")
        else:
            res.note("fixtures", name, f"not read with zarrita: {info.get('why_not_zarrita')}")
        try:
            arr, _ = read_store_spec(store)
        except Unsupported as e:
            res.note("fixtures", name, f"spec-only decoder skips codec {e}")
            continue
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            res.fail("fixtures", name, f"spec-only decoder failed: {e}")
            continue
        diff = first_difference(le_bytes(arr), expected, dtype)
        if diff:
            res.fail("fixtures", name, f"spec-only decoder differs from the .bin: {diff}")
        else:
            res.ok("fixtures", name, "spec decoder")
    # The damaged stores must really be damaged for the spec-only decoder.
    bad = os.path.join(env.fx, "bad")
    for f in sorted(os.listdir(bad)):
        if f.endswith(".zarr"):
            try:
                read_store_spec(os.path.join(bad, f))
                res.fail("fixtures", f"bad/{f}", "the spec-only decoder reads it without error")
            except Exception:  # noqa: BLE001
                res.ok("fixtures", f"bad/{f}", "damaged")


# ---------------------------------------------------------------------------------------------
# Part read: mmcompute reads the fixtures.

def reduce_cli(env, store, op, axis, out, select=None):
    if os.path.exists(out):
        os.remove(out)
    cmd = [env.cli, "reduce", store, "--op", op, "--axis", axis, "-o", out, "--quiet"]
    if select:
        cmd += ["--select", select]
    r = run(cmd)
    if r.returncode != 0:
        return None, f"`{' '.join(cmd[1:])}` exit {r.returncode}: {short(r.stderr)}"
    try:
        return np.load(out), ""
    except Exception as e:  # noqa: BLE001
        return None, f"np.load({out}) failed: {e}"


def close_enough(got, want, scale, out_dtype):
    """Elementwise: NaN matches NaN, inf matches the same inf, finite values within a
    tolerance set by the result's precision and the magnitude of what was added up."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    eps = 4e-7 if out_dtype == np.float32 else 1e-12
    both_nan = np.isnan(got) & np.isnan(want)
    same_inf = np.isinf(want) & (got == want)
    finite = np.isfinite(want) & np.isfinite(got)
    with np.errstate(invalid="ignore", over="ignore"):
        tol = eps * (np.abs(want) + np.where(np.isfinite(scale), scale, 0.0)) + 1e-300
        near = finite & (np.abs(got - want) <= tol)
    return both_nan | same_inf | near


def exact_equal(got, want):
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return False
    if got.dtype.kind in "biu" and want.dtype.kind in "biu":
        return bool(np.all(got.astype(object) == want.astype(object)))
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    return bool(np.all((g == w) | (np.isnan(g) & np.isnan(w))))


def check_reductions(env, res, part, name, store, a):
    """mean over axis 0, min/max (and sum where exact) over the last axis."""
    if a.ndim == 0:
        return
    out = os.path.join(env.work, "reduce.npy")
    f64 = a.astype(np.float64)
    # mean over axis 0
    got, err = reduce_cli(env, store, "mean", "0", out)
    if got is None:
        res.fail(part, name, err)
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            want = np.mean(f64, axis=0)
            scale = np.mean(np.abs(f64), axis=0)
        if got.shape != want.shape:
            res.fail(part, name, f"reduce mean axis 0: shape {got.shape}, expected {want.shape}")
        elif not np.all(close_enough(got, want, scale, got.dtype)):
            bad = np.argwhere(~close_enough(got, want, scale, got.dtype))[0]
            res.fail(part, name, f"reduce mean axis 0 at {tuple(bad)}: got "
                     f"{np.asarray(got)[tuple(bad)]!r}, numpy {np.asarray(want)[tuple(bad)]!r}")
        else:
            res.ok(part, name, "mean")
    for op in ("min", "max"):
        got, err = reduce_cli(env, store, op, "-1", out)
        if got is None:
            res.fail(part, name, err)
            continue
        want = getattr(np, op)(a, axis=-1)
        if not exact_equal(got, want):
            res.fail(part, name, f"reduce {op} axis -1: got {np.asarray(got).ravel()[:6]}..., "
                     f"numpy {np.asarray(want).ravel()[:6]}...")
        else:
            res.ok(part, name, op)
    # max over a middle part (--select): reads only some chunks, or some inner chunks of a
    # shard through its index.
    sel = tuple(slice(n // 3, max(n // 3 + 1, (2 * n) // 3 + 1)) for n in a.shape)
    text = ",".join(f"{x.start}:{x.stop}" for x in sel)
    got, err = reduce_cli(env, store, "max", "-1", out, select=text)
    if got is None:
        res.fail(part, name, err)
    else:
        want = np.max(a[sel], axis=-1)
        if not exact_equal(got, want):
            res.fail(part, name, f"reduce max axis -1 --select {text}: got "
                     f"{np.asarray(got).ravel()[:6]}..., numpy {np.asarray(want).ravel()[:6]}...")
        else:
            res.ok(part, name, f"max --select {text}")
    if a.dtype.kind == "b" or (a.dtype.kind in "iu" and a.dtype.itemsize <= 4):
        got, err = reduce_cli(env, store, "sum", "-1", out)
        want = np.sum(a.astype(np.int64), axis=-1)
        if got is None:
            res.fail(part, name, err)
        elif not exact_equal(got, want):
            res.fail(part, name, f"reduce sum axis -1: got {np.asarray(got).ravel()[:6]}..., "
                     f"numpy {np.asarray(want).ravel()[:6]}...")
        else:
            res.ok(part, name, "sum")
    elif a.dtype.kind == "f":
        got, err = reduce_cli(env, store, "sum", "-1", out)
        if got is None:
            res.fail(part, name, err)
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                want = np.sum(f64, axis=-1)
                scale = np.sum(np.abs(f64), axis=-1)
            if not np.all(close_enough(got, want, scale, got.dtype)):
                res.fail(part, name, "reduce sum axis -1 differs from numpy")
            else:
                res.ok(part, name, "sum")


def convert_to_npy(env, src, out):
    if os.path.exists(out):
        os.remove(out)
    cmd = [env.cli, "convert", src, out, "--quiet"]
    r = run(cmd)
    if r.returncode != 0:
        return None, f"`convert {os.path.basename(src)} {os.path.basename(out)}` exit " \
                     f"{r.returncode}: {short(r.stderr)}"
    try:
        return np.load(out), ""
    except Exception as e:  # noqa: BLE001
        return None, f"np.load failed: {e}"


def part_read(env, res):
    print("part read: mmcompute convert and reduce read the fixtures")
    out = os.path.join(env.work, "out.npy")
    for name, info, expected in load_cases(env):
        store = os.path.join(env.fx, f"{name}.zarr")
        dtype = np.dtype(info["dtype"])
        got, err = convert_to_npy(env, store, out)
        if got is None:
            word = info.get("refusal_ok")
            refused = ("exit 1:" in err or "exit 2:" in err) and not os.path.exists(out)
            if word and refused and word.lower() in err.lower():
                res.note("read", name, f"refused, which this case allows: {err}")
                res.ok("read", name, "allowed refusal")
            else:
                res.fail("read", name, err)
            continue
        if list(got.shape) != list(info["shape"]):
            res.fail("read", name, f"convert gave shape {list(got.shape)}, expected {info['shape']}")
            continue
        if got.dtype.kind != dtype.kind or got.dtype.itemsize != dtype.itemsize:
            res.fail("read", name, f"convert gave dtype {got.dtype.str}, expected {dtype.str}")
            continue
        diff = first_difference(le_bytes(got), expected, dtype)
        if diff:
            res.fail("read", name, f"convert's out.npy differs from the .bin: {diff}")
            continue
        res.ok("read", name, f"convert ({got.dtype.str})")
        check_reductions(env, res, "read", name, store, expected_array(info, expected))


# ---------------------------------------------------------------------------------------------
# Part bad: damaged stores are refused cleanly.

def part_bad(env, res):
    print("part bad: damaged stores fail with one clear line")
    bad = os.path.join(env.fx, "bad")
    for f in sorted(os.listdir(bad)):
        if not f.endswith(".txt"):
            continue
        name = f[:-4]
        with open(os.path.join(bad, f)) as fh:
            words = [w.strip().lower() for w in fh.read().strip().split("|") if w.strip()]
        store = os.path.join(bad, f"{name}.zarr")
        outdir = os.path.join(env.work, "bad_out")
        shutil.rmtree(outdir, ignore_errors=True)
        os.makedirs(outdir)
        for what, cmd in (
            ("convert", [env.cli, "convert", store, os.path.join(outdir, "out.npy"), "--quiet"]),
            ("reduce", [env.cli, "reduce", store, "--op", "sum", "-o",
                        os.path.join(outdir, "red.npy"), "--quiet"]),
        ):
            r = run(cmd)
            lines = [line for line in r.stderr.splitlines() if line.strip()]
            left = sorted(os.listdir(outdir))
            if r.returncode == 0:
                res.fail("bad", name, f"{what} succeeded on a damaged store")
            elif r.returncode < 0 or r.returncode >= 128 or r.returncode == -999:
                res.fail("bad", name, f"{what} crashed or hung (exit {r.returncode}): "
                         f"{short(r.stderr)}")
            elif len(lines) != 1:
                res.fail("bad", name, f"{what}: {len(lines)} lines on stderr, expected one: "
                         f"{short(r.stderr)}")
            elif not any(w in lines[0].lower() for w in words):
                res.fail("bad", name, f"{what}: the error does not mention "
                         f"{' or '.join(words)}: {lines[0]}")
            elif left:
                res.fail("bad", name, f"{what} left {left} behind")
            else:
                res.ok("bad", name, f"{what}: {lines[0]}")
            for leftover in left:
                p = os.path.join(outdir, leftover)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


# ---------------------------------------------------------------------------------------------
# Part write: mmcompute writes zarr v3, zarrita and the spec-only decoder read it.

def write_input(name, dtype, shape, zero=None, fortran=False, specials=False):
    """Deterministic data for a write case; `zero` is a tuple of slices set to 0."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    seed = sum(ord(c) for c in name)
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) * np.uint64(2862933555777941757) + np.uint64(seed)
        x ^= x >> np.uint64(31)
        x = x * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(29)
    if dtype.kind == "b":
        a = (x % np.uint64(5)) < np.uint64(2)
    elif dtype.kind in "iu":
        a = x.view(np.int64 if dtype.kind == "i" else np.uint64).astype(dtype.newbyteorder("="))
        if n >= 2:
            info = np.iinfo(dtype)
            a[0], a[1] = info.min, info.max
    else:
        a = ((x >> np.uint64(33)) % np.uint64(100000)).astype(np.float64) / 97.0 - 500.0
        a = a.astype(dtype.newbyteorder("="))
        if specials and a.dtype.itemsize == 2:
            # float16: quiet and signalling NaNs with payloads, infinities, -0.0, the smallest
            # and largest subnormals, 65504 (as bits: every one must come back as it was).
            sp = np.array([0x7E00, 0xFE01, 0x7C01, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x03FF,
                           0x7BFF], dtype="<u2").view("<f2").astype(a.dtype)
        elif specials:
            sp = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], dtype=a.dtype)
        if specials:
            idx = np.arange(n) % 17 == 3
            a[idx] = sp[(np.arange(n)[idx] // 17) % len(sp)]
    a = a.reshape(shape)
    if zero is not None:
        a[zero] = 0
    a = a.astype(dtype)  # the byte order asked for
    return np.asfortranarray(a) if fortran else np.ascontiguousarray(a)


S = slice
# name, dtype, shape, --chunks, --shards, --compressor, extras
WRITE_CASES = [
    ("w_u1_3d_none_sharded", "|u1", (5, 37, 41), (2, 8, 16), (4, 16, 32), "none", {}),
    ("w_i2_2d_zlib", "<i2", (50, 77), (16, 16), None, "zlib", {}),
    ("w_u2_be_3d_zstd_sharded", ">u2", (3, 40, 50), (1, 16, 16), (2, 32, 32), "zstd", {}),
    ("w_i4_blosc", "<i4", (33, 65), (16, 32), None, "blosc", {}),
    ("w_i4_blosc_sharded", "<i4", (33, 65), (8, 16), (16, 32), "blosc", {}),
    ("w_u4_none_edges", "<u4", (20, 30), (7, 9), None, "none", {}),
    ("w_i8_zstd_sharded", "<i8", (17, 19), (4, 4), (8, 12), "zstd", {}),
    ("w_u8_1d_zlib_sharded", "<u8", (1000,), (64,), (256,), "zlib", {}),
    ("w_f4_specials_zlib_sharded", "<f4", (6, 25, 31), (2, 8, 8), (4, 16, 16), "zlib",
     {"specials": True}),
    ("w_f8_be_specials_none", ">f8", (9, 21), (4, 5), None, "none", {"specials": True}),
    ("w_f8_be_zstd_sharded", ">f8", (9, 21), (4, 5), (8, 10), "zstd", {"specials": True}),
    ("w_i4_be_fortran_blosc_sharded", ">i4", (12, 14, 10), (3, 7, 5), (6, 14, 10), "blosc",
     {"fortran": True}),
    ("w_bool_none_sharded", "|b1", (30, 30), (8, 8), (16, 16), "none", {}),
    ("w_bool_zstd", "|b1", (30, 30), (8, 8), None, "zstd", {}),
    ("w_f4_zeros_zstd_sharded", "<f4", (8, 64, 64), (1, 16, 16), (2, 32, 32), "zstd",
     {"zero": (S(0, 4), S(None), S(None))}),
    ("w_u2_zeros_none", "<u2", (8, 64, 64), (2, 16, 16), None, "none",
     {"zero": (S(None), S(0, 32), S(None))}),
    ("w_i2_zeros_none_sharded", "<i2", (8, 40, 40), (2, 10, 10), (4, 20, 20), "none",
     {"zero": (S(None), S(0, 25), S(0, 15))}),
    ("w_i2_default_chunks_zstd", "<i2", (4, 30, 40), None, None, "zstd", {}),
    ("w_u1_shard_bigger_than_array", "|u1", (10, 10), (4, 4), (16, 16), "none", {}),
    ("w_f2_specials_zlib_sharded", "<f2", (6, 25, 31), (2, 8, 8), (4, 16, 16), "zlib",
     {"specials": True}),
    ("w_f2_be_specials_none", ">f2", (9, 21), (4, 5), None, "none", {"specials": True}),
    ("w_f2_be_blosc_fortran_sharded", ">f2", (12, 14, 10), (3, 7, 5), (6, 14, 10), "blosc",
     {"fortran": True, "specials": True}),
]


def count_keys(store):
    return sum(len([f for f in files if f != "zarr.json"]) for _, _, files in os.walk(store))


def check_written_meta(meta, chunks, shards):
    """Problems with the zarr.json that convert wrote, given the flags passed."""
    problems = []
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        return ["zarr.json is not a zarr v3 array"]
    grid = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
    sharding = [c for c in meta.get("codecs", []) if c.get("name") == "sharding_indexed"]
    if shards:
        if not sharding:
            problems.append("--shards given but no sharding_indexed codec")
        else:
            inner = sharding[0].get("configuration", {}).get("chunk_shape")
            if chunks and list(inner) != list(chunks):
                problems.append(f"inner chunk_shape {inner}, --chunks was {list(chunks)}")
        if list(grid or []) != list(shards):
            problems.append(f"chunk_grid chunk_shape {grid}, --shards was {list(shards)}")
    else:
        if sharding:
            problems.append("sharding_indexed without --shards")
        if chunks and list(grid or []) != list(chunks):
            problems.append(f"chunk_grid chunk_shape {grid}, --chunks was {list(chunks)}")
    return problems


def part_write(env, res):
    print("part write: mmcompute writes zarr v3; zarrita and the spec-only decoder read it")
    wdir = os.path.join(env.work, "write")
    shutil.rmtree(wdir, ignore_errors=True)
    os.makedirs(wdir)
    written = []  # (name, input array, store, meta, flags)
    for name, dtype, shape, chunks, shards, comp, extra in WRITE_CASES:
        a = write_input(name, dtype, shape, zero=extra.get("zero"),
                        fortran=extra.get("fortran", False), specials=extra.get("specials", False))
        src = os.path.join(wdir, f"{name}.npy")
        np.save(src, a)
        store = os.path.join(wdir, f"{name}.zarr")
        flags = ["--zarr-format", "3", "--compressor", comp]
        if chunks:
            flags += ["--chunks", ",".join(map(str, chunks))]
        if shards:
            flags += ["--shards", ",".join(map(str, shards))]
        r = run([env.cli, "convert", src, store, "--quiet"] + flags)
        if r.returncode != 0:
            res.fail("write", name, f"`convert IN.npy OUT.zarr {' '.join(flags)}` exit "
                     f"{r.returncode}: {short(r.stderr)}")
            continue
        try:
            with open(os.path.join(store, "zarr.json")) as f:
                meta = json.load(f)
        except Exception as e:  # noqa: BLE001
            res.fail("write", name, f"no readable zarr.json: {e}")
            continue
        problems = check_written_meta(meta, chunks, shards)
        if problems:
            res.fail("write", name, f"{' '.join(flags)}: " + "; ".join(problems))
        written.append((name, a, store, meta, extra))

    # zarrita reads every store in one node process (but not index_location "start").
    def at_start(meta):
        sharding = [c for c in meta.get("codecs", []) if c.get("name") == "sharding_indexed"]
        return bool(sharding) and \
            sharding[0].get("configuration", {}).get("index_location", "end") == "start"
    pairs = [(store, os.path.join(wdir, f"{name}.zarrita.bin"))
             for name, a, store, meta, _ in written
             if not at_start(meta) and zarrita_reads(a.dtype)]
    reads = dict(zip([p[0] for p in pairs], env.read_stores(pairs)))

    for name, a, store, meta, extra in written:
        le = a.dtype.newbyteorder("<")
        want = le_bytes(a)
        if not zarrita_reads(a.dtype):
            res.note("write", name, "float16: zarrita needs Float16Array, which Node 20 lacks")
        elif store not in reads:
            res.note("write", name, "index_location start: zarrita 0.7.5 cannot read it")
        else:
            info, err = reads[store]
            if info is None:
                res.fail("write", name, f"zarrita cannot read it: {err}")
            else:
                with open(os.path.join(wdir, f"{name}.zarrita.bin"), "rb") as f:
                    diff = first_difference(f.read(), want, le)
                if info["dtype"] != le.str or info["shape"] != list(a.shape):
                    res.fail("write", name, f"zarrita sees {info['dtype']} {info['shape']}, "
                             f"the input was {le.str} {list(a.shape)}")
                elif diff:
                    res.fail("write", name, f"zarrita reads other values than the input: {diff}")
                else:
                    res.ok("write", name, "zarrita")
        # the spec-only decoder (checks every crc32c on the way)
        try:
            arr, _ = read_store_spec(store)
            diff = first_difference(le_bytes(arr), want, le)
            if diff:
                res.fail("write", name, f"spec-only decoder reads other values: {diff}")
            else:
                res.ok("write", name, "spec decoder")
        except Unsupported as e:
            res.note("write", name, f"spec-only decoder skips codec {e}")
        except Exception as e:  # noqa: BLE001
            res.fail("write", name, f"spec-only decoder failed: {e}")
        # round trip through mmcompute
        back, err = convert_to_npy(env, store, os.path.join(wdir, f"{name}.back.npy"))
        if back is None:
            res.fail("write", name, f"reading it back: {err}")
        elif back.shape != a.shape:
            res.fail("write", name, f"back.npy has shape {back.shape}, expected {a.shape}")
        else:
            diff = first_difference(le_bytes(back), want, le)
            if diff:
                res.fail("write", name, f"back.npy differs from the input: {diff}")
            else:
                res.ok("write", name, "round trip")
        if "zero" in extra:
            res.note("write", name, f"{count_keys(store)} chunk/shard files stored")


# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cli", help="the mmcompute binary (not needed for --only fixtures)")
    p.add_argument("--node-dir", required=True, help="folder holding node_modules/zarrita")
    p.add_argument("--work", required=True, help="scratch folder (made if missing)")
    p.add_argument("--only", choices=["fixtures", "read", "bad", "write"])
    p.add_argument("--node", help="node executable (default: node on PATH)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    parts = [args.only] if args.only else ["fixtures", "read", "bad", "write"]
    if any(x != "fixtures" for x in parts) and not args.cli:
        p.error("--cli is needed for read, bad and write")
    os.makedirs(args.work, exist_ok=True)
    env = Env(args)
    res = Results(args.verbose)
    t0 = time.monotonic()
    if any(x in parts for x in ("fixtures", "read", "bad")):
        make_fixtures(env)
    for part in parts:
        t = time.monotonic()
        {"fixtures": part_fixtures, "read": part_read, "bad": part_bad,
         "write": part_write}[part](env, res)
        print(f"  ({time.monotonic() - t:.1f} s)")
    for n in res.notes if not args.verbose else []:
        print(f"  note {n}")
    print(f"total {time.monotonic() - t0:.1f} s")
    if res.failed:
        print(f"{len(res.failed)} mismatches:")
        for f in res.failed:
            print(f"  {f}")
    print(f"check_zarrita: {res.passed} passed, {len(res.failed)} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
