"""Seed corpora of the fuzz targets, written by numpy, zarr-python (numcodecs) and h5py.

Usage: make_seeds.py OUTDIR. Makes OUTDIR/<target>/ for each target of tests/fuzz, each file
one input in that target's layout (see the header comment of tests/fuzz/<target>_fuzz.cpp).
Run at test time; nothing here is committed as binary.
"""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numcodecs
import numpy as np
import zarr


def save(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def arrays():
    rng = np.random.default_rng(15)
    yield "u8_3d", rng.integers(0, 255, (3, 4, 5), dtype=np.uint8)
    yield "f4_2d", rng.standard_normal((6, 7)).astype("<f4")
    yield "f8_be", rng.standard_normal((5, 3)).astype(">f8")
    yield "i2_1d", np.arange(-20, 20, dtype=np.int16)
    yield "bool", rng.integers(0, 2, (4, 4)).astype(bool)
    yield "c8", (rng.standard_normal(6) + 1j).astype(np.complex64)
    yield "empty", np.zeros((0, 3), dtype=np.uint16)
    yield "scalar", np.array(3.5)


def npy_seeds(out):
    for name, a in arrays():
        for version in ((1, 0), (2, 0), (3, 0)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, version=version)
            save(out, f"{name}_v{version[0]}.npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asfortranarray(a))
        save(out, f"{name}_fortran.npy", buf.getvalue())


def zarr_seeds(out):
    compressors = {
        "none": None,
        "zlib": numcodecs.Zlib(level=1),
        "gzip": numcodecs.GZip(level=1),
        "zstd": numcodecs.Zstd(level=1),
        "blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in arrays():
            if a.ndim == 0:
                continue
            for cname, comp in compressors.items():
                for sep in (".", "/"):
                    path = os.path.join(tmp, f"{name}_{cname}_{sep == '/'}.zarr")
                    chunks = tuple(max(1, (e + 1) // 2) for e in a.shape)
                    z = zarr.open_array(path, mode="w", shape=a.shape, chunks=chunks,
                                        dtype=a.dtype, compressor=comp, fill_value=7,
                                        order="F" if a.ndim == 2 else "C",
                                        dimension_separator=sep)
                    z[...] = a
                    meta = open(os.path.join(path, ".zarray"), "rb").read()
                    key = sep.join("0" for _ in a.shape)
                    chunk_path = os.path.join(path, key)
                    chunk = open(chunk_path, "rb").read() if os.path.exists(chunk_path) else b""
                    save(out, f"{name}_{cname}_{'nested' if sep == '/' else 'flat'}",
                         struct.pack("<H", len(meta)) + meta + chunk)


def zarr_v3_seeds(out):
    """zarr.json and the first shard (or chunk) of every store make_sharded.py writes, damaged
    ones included."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                          "make_sharded.py")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, script, tmp], check=True, stdout=subprocess.DEVNULL)
        for folder in (tmp, os.path.join(tmp, "bad")):
            for entry in sorted(os.listdir(folder)):
                if not entry.endswith(".zarr"):
                    continue
                store = os.path.join(folder, entry)
                meta = open(os.path.join(store, "zarr.json"), "rb").read()
                ndim = len(json.loads(meta)["shape"])
                first = None
                for key in ("c/" + "/".join("0" * ndim), "c." + ".".join("0" * ndim),
                            ".".join("0" * ndim)):
                    if os.path.isfile(os.path.join(store, key)):
                        first = open(os.path.join(store, key), "rb").read()
                        break
                save(out, "v3_" + entry[:-5], struct.pack("<H", len(meta)) + meta + (first or b""))
    # Nesting past the parser's bound, in a field and in the attributes.
    deep = b'{"zarr_format": 3, "node_type": "array", "attributes": ' + b"[" * 200 + b"]" * 200
    save(out, "v3_deep", struct.pack("<H", len(deep) + 1) + deep + b"}")


def codec_seeds(out):
    data = np.arange(1000, dtype="<u4").tobytes()
    head = lambda which, n: bytes([which]) + struct.pack("<I", n)[:3]
    save(out, "zlib", head(0, len(data)) + numcodecs.Zlib(level=5).encode(data))
    save(out, "gzip", head(1, len(data)) + bytes(numcodecs.GZip(level=5).encode(data)))
    save(out, "zstd", head(2, len(data)) + numcodecs.Zstd(level=3).encode(data))
    for cname in ("lz4", "blosclz", "zstd", "zlib"):
        for shuffle in (0, 1, 2):
            enc = numcodecs.Blosc(cname=cname, clevel=5, shuffle=shuffle).encode(data)
            save(out, f"blosc_{cname}_{shuffle}", head(3, len(data)) + enc)
    save(out, "unshuffle", head(4, 3) + data[:64])


def hdf5_seeds(out):
    types = [np.uint8, np.int16, np.uint32, np.float32, np.float64, np.int64]
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        for t_index, t in enumerate(types):
            for bits in range(8):
                a_rows, a_cols = 1 + (t_index + bits) % 8, 1 + (3 * bits) % 16
                shape = (a_rows + 1, a_cols + 1)
                path = os.path.join(tmp, f"{t_index}_{bits}.h5")
                with h5py.File(path, "w") as f:
                    d = f.create_dataset("d", shape=shape, dtype=t, chunks=(a_rows, a_cols),
                                         shuffle=bool(bits & 1),
                                         compression="gzip" if bits & 2 else None,
                                         fletcher32=bool(bits & 4))
                    d[...] = (rng.standard_normal(shape) * 50).astype(t)
                    mask, stored = d.id.read_direct_chunk((0, 0))
                head = bytes([bits, t_index, (a_rows - 1) | ((a_cols - 1) << 4), mask])
                save(out, f"{np.dtype(t).name}_{bits}", head + stored)


def cli_seeds(out):
    texts = {
        0: ["u8", "uint16", "<f4", ">i8", "float64", "bool", "complex64", "f2"],
        1: ["<u2", ">f8", "|b1", "<c16", "|u1"],
        2: ["2048,1024,1024", "3", "0,5", "1x2x3", "9223372036854775807,2"],
        3: ["1,2", "-1", "0", "-3,-2", "2,2"],
        4: ["0", "4096", "1M", "2G", "16k", "18446744073709551615"],
        5: ["process", "thread", "serial"],
        6: ["sum", "mean", "histogram", "nanstd", "argmax"],
        7: ["none", "zlib", "zstd", "blosc"],
        8: ["readonly", "copy-on-write", "readwrite"],
        9: ["cube.h5:/images", "x.zarr", "a:b:/c/d", "out.npy", "y.hdf5"],
        10: ["max 100000", "150000 100000", "50000 100000\n"],
        11: ["-1\n100000", "250000\n100000"],
        12: ["max\nanon 1000\nshmem 20", "1073741824\nanon 4096\nshmem 0",
             "9223372036854771712\ntotal_rss 10\ntotal_shmem 1"],
    }
    for which, values in texts.items():
        for i, v in enumerate(values):
            save(out, f"{which}_{i}", bytes([which]) + v.encode())
    for i, n in enumerate((1, -1, 0, -2, 2**31 - 1, -(2**31))):
        save(out, f"jobs_{i}", bytes([13]) + struct.pack("<i", n))


def main():
    root = sys.argv[1]
    npy_seeds(os.path.join(root, "npy"))
    zarr_seeds(os.path.join(root, "zarr"))
    zarr_v3_seeds(os.path.join(root, "zarr"))
    codec_seeds(os.path.join(root, "codecs"))
    hdf5_seeds(os.path.join(root, "hdf5_chunk"))
    cli_seeds(os.path.join(root, "cli_values"))


if __name__ == "__main__":
    main()
