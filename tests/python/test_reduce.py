"""mmcompute.reduce against numpy: every op family, dtype and axis set; every kind of source;
bitwise equality with the CLI; errors as Python exceptions; several threads at once."""
import os
import threading

import h5py
import numpy as np
import pytest
import zarr

import mmcompute
from conftest import values

DTYPES = ["|u1", "<i2", "<u2", "<i4", "<f2", "<f4", "<f8", "<i8", "<u8", "|b1"]
AXES = [None, 0, (1, 2), (0, 2), -1]
FLOAT_OPS = ["sum", "mean", "var", "std", "norm", "nansum", "nanmean", "nanvar", "nanstd"]
EXACT_OPS = ["min", "max", "count", "any", "all", "argmin", "argmax", "median", "percentile"]


def arg_over(a, axes, fn):
    """numpy's argmin/argmax over several axes: the index in C order over the reduced axes."""
    axes = tuple(range(a.ndim)) if axes is None else tuple(np.atleast_1d(axes) % a.ndim)
    kept = [d for d in range(a.ndim) if d not in axes]
    moved = np.transpose(a, kept + list(axes))
    return fn(moved.reshape([a.shape[d] for d in kept] + [-1]), axis=-1)


def numpy_answer(a, op, axes, q):
    f = a.astype(np.float64)
    ax = axes if axes is None or isinstance(axes, int) else tuple(axes)
    if op == "sum":
        kind = a.dtype.kind
        return np.sum(a, axis=ax, dtype=np.uint64 if kind == "u" else
                      np.float64 if kind == "f" else np.int64)
    if op == "count":
        return np.sum(~np.isnan(f), axis=ax).astype(np.int64)
    if op in ("any", "all"):
        return getattr(np, op)(a != 0, axis=ax)
    if op in ("argmin", "argmax"):
        return arg_over(a, axes, getattr(np, op))
    if op in ("min", "max"):
        return getattr(np, op)(a, axis=ax)
    if op == "norm":
        return np.sqrt(np.sum(f * f, axis=ax))
    if op in ("var", "std", "nanvar", "nanstd"):
        return getattr(np, op)(f, axis=ax, ddof=1)
    if op == "percentile":
        return np.percentile(f, q, axis=ax)
    return getattr(np, op)(f, axis=ax)


def check(got, want, op, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    if op in FLOAT_OPS:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)
        if op in ("min", "max"):
            assert got.dtype == want.dtype, what


@pytest.mark.parametrize("descr", DTYPES)
def test_every_op_dtype_and_axes_match_numpy(tmp_path, rng, descr):
    a = values(rng, descr, (6, 7, 5))
    if a.dtype.kind == "f":
        a[2, 3, 1] = np.nan
    path = tmp_path / "a.npy"
    np.save(path, a)
    ops = EXACT_OPS + FLOAT_OPS if a.dtype != np.bool_ else ["sum", "mean", "min", "max",
                                                             "count", "any", "all", "argmax"]
    if a.dtype.kind == "f":  # NaN: numpy's min/max/median propagate it, the nan ops skip it
        ops = ops + ["nanmin", "nanmax", "nanmedian"]
    q = [5, 50, 95]
    for axes in AXES:
        got = mmcompute.reduce(path, ops, axes, ddof=1, q=q, n_jobs=2)
        assert sorted(got) == sorted(ops)
        for op in ops:
            check(got[op], numpy_answer(a, op, axes, q), op, f"{descr} {op} axis={axes}")


def test_single_ops_return_numpy_shapes_and_types(tmp_path, rng):
    a = values(rng, "<f4", (4, 8, 9))
    path = tmp_path / "a.npy"
    np.save(path, a)
    mean = mmcompute.reduce(path, "mean", axis=(1, 2))
    assert isinstance(mean, np.ndarray) and mean.dtype == np.float64 and mean.shape == (4,)
    total = mmcompute.reduce(path, "max")
    assert isinstance(total, np.float32) and total == a.max()
    counts, edges = mmcompute.reduce(path, "histogram", bins=7, range=(-100, 100))
    want_counts, want_edges = np.histogram(a, bins=7, range=(-100, 100))
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)
    p = mmcompute.reduce(path, "percentile", axis=0, q=25)
    np.testing.assert_array_equal(p, np.percentile(a.astype(np.float64), 25, axis=0))
    both = mmcompute.reduce(path, "mean,histogram", axis=None, bins=4)
    assert set(both) == {"mean", "histogram", "bin_edges"}
    np.testing.assert_array_equal(both["histogram"], np.histogram(a, bins=4)[0])


@pytest.mark.parametrize("backend,n_jobs", [("process", 2), ("thread", 2), ("serial", 1),
                                            ("process", 3)])
def test_bitwise_equal_to_the_cli(tmp_path, rng, cli, backend, n_jobs):
    a = values(rng, "<f4", (9, 64, 33))
    a[1, 2, 3] = np.nan
    path = tmp_path / "a.npy"
    np.save(path, a)
    for op, axis, cli_axis in [("mean", (1, 2), "1,2"), ("std", 0, "0"),
                               ("nanmedian", (1, 2), "1,2"), ("sum", -1, "-1")]:
        out = tmp_path / f"{op}.npy"
        cli("reduce", path, "--op", op, "--axis", cli_axis, "-o", out, "--no-cache")
        want = np.load(out)
        got = mmcompute.reduce(path, op, axis, backend=backend, n_jobs=n_jobs)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), op


def test_memmaps_are_read_in_place_from_their_file(tmp_path, rng):
    a = values(rng, "<u2", (10, 16, 12))
    path = tmp_path / "cube.u16"
    header = 4096 + 24  # bytes before the cube, numpy.memmap's offset
    with open(path, "wb") as f:
        f.write(b"x" * header)
        f.write(a.tobytes())
    m = np.memmap(path, dtype="<u2", mode="r", shape=a.shape, offset=header)
    seen = mmcompute.info(m)
    assert seen["format"] == "raw" and seen["path"] == str(path)
    np.testing.assert_array_equal(mmcompute.reduce(m, "max", (1, 2)), a.max(axis=(1, 2)))
    # A contiguous view of the memmap: the same file, further in.
    view = m[3:7]
    assert mmcompute.info(view)["path"] == str(path)
    np.testing.assert_allclose(mmcompute.reduce(view, "mean", (1, 2)),
                               a[3:7].mean(axis=(1, 2)), rtol=1e-12)
    # r+: what the program wrote through the memmap is what the engine reads.
    w = np.memmap(path, dtype="<u2", mode="r+", shape=a.shape, offset=header)
    w[5, 0, 0] = 65535
    assert mmcompute.reduce(w, "max", (1, 2))[5] == 65535
    # Copy-on-write: the file does not hold the change, so the array's bytes are read.
    c = np.memmap(path, dtype="<u2", mode="c", shape=a.shape, offset=header)
    c[6, 0, 0] = 65534
    assert mmcompute.reduce(c, "max", (1, 2))[6] == 65534


@pytest.mark.parametrize("layout", ["C", "F", "strided", "big-endian", "0-d", "empty"])
def test_in_memory_arrays_of_every_layout(rng, layout):
    a = values(rng, "<f8", (5, 6, 7))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided":
        a = a[:, ::2, 1::3]
    elif layout == "big-endian":
        a = a.astype(">f8")
    elif layout == "0-d":
        a = np.array(2.5)
    elif layout == "empty":
        a = a[:, :0]
    fds = len(os.listdir("/proc/self/fd"))
    axis = None if a.ndim == 0 else (0, 2)
    got = mmcompute.reduce(a, "sum", axis)
    np.testing.assert_allclose(got, np.sum(a.astype(np.float64), axis=axis), rtol=1e-12)
    assert len(os.listdir("/proc/self/fd")) == fds, "the memfd copy is closed after the call"


def test_h5py_datasets_and_zarr_arrays(tmp_path, rng):
    a = values(rng, "<i4", (6, 10, 8))
    h5 = tmp_path / "a.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("group/images", data=a, chunks=(2, 5, 8), compression="gzip")
    with h5py.File(h5, "r") as f:
        ds = f["group/images"]
        np.testing.assert_array_equal(mmcompute.reduce(ds, "max", (1, 2)), a.max(axis=(1, 2)))
        assert ds[0, 0, 0] == a[0, 0, 0], "the caller's handle stays valid"
    store = tmp_path / "a.zarr"
    z = zarr.open(str(store), mode="w", shape=a.shape, chunks=(4, 4, 4), dtype=a.dtype)
    z[...] = a
    np.testing.assert_array_equal(mmcompute.reduce(z, "min", 0), a.min(axis=0))
    with pytest.raises(TypeError, match="DirectoryStore"):
        mmcompute.reduce(zarr.array(a), "min")


def test_options_nodata_mask_and_select(tmp_path, rng):
    a = values(rng, "<i2", (8, 6, 5))
    a[0] = -9999
    path = tmp_path / "a.npy"
    np.save(path, a)
    mask = rng.random((6, 5)) < 0.3
    got = mmcompute.reduce(path, "mean", (1, 2), nodata=-9999, mask=mask)
    masked = np.ma.masked_array(a, mask=np.broadcast_to(mask, a.shape) | (a == -9999))
    want = masked.astype(np.float64).mean(axis=(1, 2)).filled(np.nan)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(got[0])
    np.save(tmp_path / "mask.npy", mask)
    again = mmcompute.reduce(path, "mean", (1, 2), nodata=-9999, mask=tmp_path / "mask.npy")
    assert again.tobytes() == got.tobytes()
    sel = mmcompute.reduce(path, "sum", (1,), select=np.s_[1:7:2, :, -3])
    np.testing.assert_array_equal(sel, a[1:7:2, :, -3].sum(axis=1))
    assert mmcompute.reduce(path, "sum", (1,), select="1:7:2,:,-3").tobytes() == sel.tobytes()


def test_raw_files_with_dtype_and_shape(tmp_path, rng):
    a = values(rng, ">f4", (3, 4, 5))
    path = tmp_path / "a.raw"
    a.tofile(path)
    got = mmcompute.reduce(path, "max", 0, dtype=">f4", shape=(3, 4, 5))
    np.testing.assert_array_equal(got, a.max(axis=0))
    f = np.asfortranarray(a)
    f.T.tofile(path)  # Fortran order on disk
    got = mmcompute.reduce(path, "min", (1, 2), dtype=">f4", shape=(3, 4, 5), order="F")
    np.testing.assert_array_equal(got, a.min(axis=(1, 2)))


def test_errors_are_python_exceptions_with_the_clis_messages(tmp_path, rng):
    with pytest.raises(FileNotFoundError) as e:
        mmcompute.reduce(tmp_path / "missing.npy", "mean")
    assert isinstance(e.value, mmcompute.NotFoundError) and "missing.npy" in str(e.value)
    path = tmp_path / "a.npy"
    np.save(path, values(rng, "<f4", (3, 4)))
    with pytest.raises(ValueError, match="op"):
        mmcompute.reduce(path, "average")
    with pytest.raises(mmcompute.InvalidArgumentError, match="axis"):
        mmcompute.reduce(path, "mean", axis=5)
    with pytest.raises(ValueError, match="dtype and shape"):
        mmcompute.reduce(tmp_path / "a.raw", "mean", dtype="u1")
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(mmcompute.CorruptError):
        mmcompute.reduce(truncated, "mean")
    with pytest.raises(TypeError, match="source must be"):
        mmcompute.reduce({"not": "an array"}, "mean")
    with pytest.raises(mmcompute.Error):
        mmcompute.reduce(np.zeros((2, 2), dtype=np.complex64), "mean")


def test_four_threads_reduce_at_once(tmp_path, rng):
    a = values(rng, "|u1", (32, 64, 64))
    path = tmp_path / "a.npy"
    np.save(path, a)
    want = mmcompute.reduce(path, "mean,max", (1, 2), n_jobs=1, backend="serial")
    errors, results = [], []

    def work():
        try:
            for _ in range(5):
                results.append(mmcompute.reduce(path, "mean,max", (1, 2), n_jobs=2))
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 20
    for r in results:
        assert r["mean"].tobytes() == want["mean"].tobytes()
        assert r["max"].tobytes() == want["max"].tobytes()


def test_arguments_are_checked_before_the_engine_runs(tmp_path, rng):
    """One-line errors for what numpy would not take either (found by a stranger's review)."""
    a = values(rng, "<f8", (3, 4, 5))
    for bad_ops in ([], "", "mean,", ()):
        with pytest.raises(ValueError, match="names no op"):
            mmcompute.reduce(a, bad_ops)
    with pytest.raises(TypeError, match="ddof must be an integer"):
        mmcompute.reduce(a, "var", ddof=0.5)
    with pytest.raises(TypeError, match="bins must be an integer"):
        mmcompute.reduce(a, "histogram", bins=2.7)
    with pytest.raises(TypeError, match="axis must be"):
        mmcompute.reduce(a, "mean", axis="12")
    with pytest.raises(ValueError, match="axis .* out of range"):
        mmcompute.reduce(a, "mean", axis=2**40)
    with pytest.raises(ValueError, match="offset -8"):
        mmcompute.reduce(tmp_path / "x.raw", "mean", dtype="u1", shape=4, offset=-8)
    with pytest.raises(TypeError, match="progress must be"):
        mmcompute.reduce(a, "mean", progress="yes")
    with pytest.raises(mmcompute.InvalidArgumentError, match="select"):
        mmcompute.reduce(a, "mean", select=True)
    with pytest.raises(TypeError, match="masked array"):
        mmcompute.reduce(np.ma.masked_greater(a, 0), "mean")
    # Spaces around names, a list source, n_jobs=None.
    got = mmcompute.reduce(a.tolist(), "mean, max", (1, 2), n_jobs=None)
    np.testing.assert_array_equal(got["max"], a.max(axis=(1, 2)))
    # No memfd left behind when a later argument is refused.
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(TypeError):
            mmcompute.reduce(a, "mean", mask=a > 0, cache=123)
    assert len(os.listdir("/proc/self/fd")) == fds
    # Errors name what the caller passed, not the memfd copy.
    with pytest.raises(ValueError) as e:
        mmcompute.reduce(a.astype(np.complex64), "mean")
    assert "/proc/self/fd" not in str(e.value) and "the in-memory array" in str(e.value)


def test_npy_memmaps_replaced_files_and_h5py_handles_read_what_the_caller_sees(tmp_path, rng):
    a = values(rng, "<f4", (6, 8, 10))
    path = tmp_path / "a.npy"
    np.save(path, a)
    m = np.load(path, mmap_mode="r")
    assert mmcompute.info(m)["format"] == "npy", "a whole .npy memmap is read in place"
    np.testing.assert_array_equal(mmcompute.reduce(m, "max", (1, 2)), a.max(axis=(1, 2)))
    np.testing.assert_array_equal(mmcompute.reduce(m[2:4], "max", (1, 2)),
                                  a[2:4].max(axis=(1, 2)))  # part of a .npy: copied
    raw = tmp_path / "x.f8"
    old = values(rng, "<f8", (480,))
    old.tofile(raw)
    mm = np.memmap(raw, dtype="<f8", mode="r", shape=(480,))
    np.zeros(480).tofile(tmp_path / "y.f8")
    os.replace(tmp_path / "y.f8", raw)
    assert mmcompute.reduce(mm, "sum") == pytest.approx(old.sum(), rel=1e-12)
    # h5py: a relative name after chdir; a file still open for writing; a file in memory.
    sub = tmp_path / "sub"
    sub.mkdir()
    with h5py.File(sub / "t.h5", "w") as f:
        f["c"] = np.zeros(5)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        with h5py.File("t.h5", "w") as f:
            f["c"] = np.arange(5.0)
        f = h5py.File("t.h5", "r")
        os.chdir(sub)
        assert mmcompute.reduce(f["c"], "max") == 4.0
        f.close()
    finally:
        os.chdir(here)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        ds = f.create_dataset("x", data=a)
        np.testing.assert_array_equal(mmcompute.reduce(ds, "min", 0), a.min(axis=0))
    with h5py.File(tmp_path / "mem.h5", "w", driver="core", backing_store=False) as f:
        f["x"] = np.ones(10)
        with pytest.raises(TypeError, match="'core' driver"):
            mmcompute.reduce(f["x"], "sum")
