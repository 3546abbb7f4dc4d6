"""float16 through the engine: every kind of source (both byte orders), every op family against
numpy (sums and means in float64, min/max in float16, histograms binned as numpy bins in
float16), nodata rounded as numpy compares, warm pools, map_slices and the CLI's outputs."""
import json

import h5py
import numpy as np
import pytest
import zarr

import mmcompute

SUMS = ["sum", "mean", "var", "std", "norm", "nansum", "nanmean", "nanstd"]
EXACT = ["min", "max", "nanmin", "nanmax", "count", "argmin", "argmax", "median",
         "nanmedian", "percentile"]


def cube(rng, shape=(5, 40, 30), descr="<f2"):
    """float16 values with NaN, infinities, -0.0, subnormals and float16's extremes."""
    a = (rng.standard_normal(shape) * 300).astype(descr)
    flat = a.reshape(-1)
    flat[:8] = [np.nan, np.inf, -np.inf, -0.0, 65504, -65504, 2.0 ** -24, -(2.0 ** -20)]
    return a


def numpy_answer(a, op, axis, q):
    f = a.astype(np.float64)
    if op in ("min", "max", "nanmin", "nanmax"):
        return getattr(np, op)(a, axis=axis)
    if op == "count":
        return np.sum(~np.isnan(f), axis=axis)
    if op in ("argmin", "argmax"):
        if axis == 0:
            return getattr(np, op)(a, axis=0)
        return getattr(np, op)(a.reshape(a.shape[0], -1), axis=1)
    if op == "norm":
        return np.sqrt(np.sum(f * f, axis=axis))
    if op == "percentile":
        return np.percentile(f, q, axis=axis)
    return getattr(np, op)(f, axis=axis)


def check(got, want, op, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    if op in SUMS:
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=what)
        return
    np.testing.assert_array_equal(got, want, err_msg=what)
    if op in ("min", "max", "nanmin", "nanmax"):
        assert got.dtype == np.float16, what


def sources(tmp_path, a):
    """The same float16 cube as every kind of source the module takes."""
    np.save(tmp_path / "le.npy", a.astype("<f2"))
    np.save(tmp_path / "be.npy", a.astype(">f2"))
    a.astype(">f2").tofile(tmp_path / "raw.f16")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("gz", data=a, chunks=(2, 16, 16), compression="gzip", shuffle=True)
        f.create_dataset("be", data=a.astype(">f2"))
    z = zarr.open(str(tmp_path / "v2.zarr"), mode="w", shape=a.shape, dtype="<f2",
                  chunks=(2, 16, 16))
    z[...] = a
    return [
        ("array", a, {}),
        ("big-endian array", a.astype(">f2"), {}),
        ("npy", tmp_path / "le.npy", {}),
        ("big-endian npy", tmp_path / "be.npy", {}),
        ("raw", tmp_path / "raw.f16", {"dtype": ">f2", "shape": a.shape}),
        ("hdf5 gzip", f"{tmp_path}/c.h5:/gz", {}),
        ("hdf5 big-endian", f"{tmp_path}/c.h5:/be", {}),
        ("zarr v2", tmp_path / "v2.zarr", {}),
    ]


def test_every_op_on_every_source_matches_numpy(tmp_path, rng):
    a = cube(rng)
    q = [5, 50, 95]
    for name, source, extra in sources(tmp_path, a):
        for axis in [(1, 2), 0]:
            got = mmcompute.reduce(source, SUMS + EXACT, axis, q=q, n_jobs=2, **extra)
            for op in SUMS + EXACT:
                check(got[op], numpy_answer(a, op, axis, q), op, f"{name} {op} axis={axis}")


def test_results_do_not_depend_on_backend_or_workers(tmp_path, rng):
    a = cube(rng, (7, 64, 48))
    np.save(tmp_path / "a.npy", a)
    ops = ["mean", "std", "min", "nanmax", "nanmedian", "histogram"]
    base = mmcompute.reduce(tmp_path / "a.npy", ops, (1, 2), backend="serial", range=(-900, 900))
    for backend, n_jobs in [("process", 2), ("process", 3), ("thread", 2)]:
        got = mmcompute.reduce(tmp_path / "a.npy", ops, (1, 2), backend=backend, n_jobs=n_jobs,
                               range=(-900, 900))
        for op in base:
            assert np.asarray(got[op]).tobytes() == np.asarray(base[op]).tobytes(), (backend, op)
    # A warm pool: its workers open the file themselves and widen it as the caller does.
    with mmcompute.Pool(2) as pool:
        for op in ["mean", "min", "nanmedian"]:
            got = pool.reduce(tmp_path / "a.npy", op, (1, 2))
            assert got.tobytes() == np.asarray(base[op]).tobytes(), op
        got = pool.reduce(a, "max", 0)
        np.testing.assert_array_equal(got, a.max(axis=0))


@pytest.mark.parametrize("bins", [1, 7, 256, 3000])
def test_histograms_bin_as_numpy_bins_in_float16(tmp_path, rng, bins):
    a = (rng.standard_normal((3, 200, 300)) * 30).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    for rng_ in [None, (-7.3, 11.1), (4.0, 4.0)]:
        counts, edges = mmcompute.reduce(tmp_path / "a.npy", "histogram", None, bins=bins,
                                         range=rng_)
        want_counts, want_edges = np.histogram(a, bins=bins, range=rng_)
        assert edges.dtype == np.float16 and want_edges.dtype == np.float16
        np.testing.assert_array_equal(edges, want_edges)
        np.testing.assert_array_equal(counts, want_counts, err_msg=f"range {rng_}")
        # Per image: one range for every output (the whole cube's, as float16 scalars).
        per = mmcompute.reduce(tmp_path / "a.npy", "histogram", (1, 2), bins=bins, range=rng_)[0]
        whole = rng_ if rng_ is not None else (a.min(), a.max())
        for i in range(3):
            np.testing.assert_array_equal(per[i], np.histogram(a[i], bins=bins, range=whole)[0])
    if bins == 3000:
        # numpy's float16 arithmetic puts elements in other bins than exact comparisons with
        # its own edges would: the emulation is what matches.
        _, edges = np.histogram(a, bins=bins)
        exact = np.histogram(a.astype(np.float64), bins=edges.astype(np.float64))[0]
        assert (exact != np.histogram(a, bins=bins)[0]).any()


def test_histograms_follow_numpys_types_for_ranges_and_norms_past_float16(tmp_path, rng):
    """Where a bound or bins / span does not fit float16 (numpy: past +-65000), numpy computes
    in float32 (or float64), and its edges are float32 then."""
    small = (rng.random(10000) * 0.01).astype(np.float16)  # bins / span far past 65504
    wide = (rng.standard_normal(8000) * 1000).astype(np.float16)
    big = np.full(50, 65504, np.float16)  # a constant: the range widened past 65000
    cases = [(small, 1000, None), (small, 100, (0, 0.001)), (wide, 10, (-1e6, 1e6)),
             (wide, 10, (-100.0, 1e6)), (wide, 7, (-3e38, 3e38)), (wide, 64, (-1e39, 1e39)),
             (big, 5, None), (wide, 50, (-5000.5, 5000.25))]
    for k, (a, bins, rng_) in enumerate(cases):
        np.save(tmp_path / f"{k}.npy", a)
        counts, edges = mmcompute.reduce(tmp_path / f"{k}.npy", "histogram", None, bins=bins,
                                         range=rng_)
        want_counts, want_edges = np.histogram(a, bins=bins, range=rng_)
        assert edges.dtype == want_edges.dtype, (k, edges.dtype, want_edges.dtype)
        np.testing.assert_array_equal(edges, want_edges, err_msg=str(k))
        np.testing.assert_array_equal(counts, want_counts, err_msg=str(k))
    # Data whose span overflows float16: numpy's indices become NaN and it raises; so do we.
    a = np.linspace(-40000, 40000, 1001).astype(np.float16)
    with pytest.raises(IndexError):
        np.histogram(a, bins=10)
    with pytest.raises(ValueError, match="wider than float16"):
        mmcompute.reduce(a, "histogram", None, bins=10)
    # So do bins / span past what float16 products hold, over the data's range.
    b = (rng.standard_normal(3000) * 1000).astype(np.float16)
    with pytest.raises(IndexError):
        np.histogram(b, bins=70000)
    with pytest.raises(ValueError, match="overflow the float16 arithmetic"):
        mmcompute.reduce(b, "histogram", None, bins=70000)
    counts, _ = mmcompute.reduce(a, "histogram", None, bins=10, range=(-40000, 40000))
    np.testing.assert_array_equal(counts, np.histogram(a, bins=10, range=(-40000, 40000))[0])


def test_nodata_is_compared_as_numpy_compares_it(tmp_path, rng):
    """numpy 1.24 compares a float16 array with a number in the number's smallest type: a float
    within +-65000 as float16 (100.01 is 100, -9999.0 is -10000), a wider float as float32,
    an integer exactly; a value out of float16's range never equals infinity."""
    a = (np.round(rng.standard_normal((4, 20, 20)) * 3) * 20).astype(np.float16)
    a[0, 0, :5] = -10000
    a[1, 0, :3] = [np.inf, -np.inf, 65504]
    np.save(tmp_path / "a.npy", a)
    for nodata in [100.01, -9999.0, -9999, 60, 65504.0, 65504.00001, 70000.0, -3.4028235e38]:
        got = mmcompute.reduce(tmp_path / "a.npy", ["mean", "count", "min", "max"], (1, 2),
                               nodata=nodata)
        with np.errstate(invalid="ignore"):
            m = np.ma.masked_where(a == nodata, a)
        assert (a == nodata).any() == (got["count"].sum() < a.size), nodata
        np.testing.assert_allclose(got["mean"], m.astype(np.float64).mean(axis=(1, 2)),
                                   rtol=1e-12, err_msg=str(nodata))
        np.testing.assert_array_equal(got["count"], m.count(axis=(1, 2)), err_msg=str(nodata))
        np.testing.assert_array_equal(got["min"], m.min(axis=(1, 2)).filled(np.nan))
        np.testing.assert_array_equal(got["max"], m.max(axis=(1, 2)).filled(np.nan))


def test_map_slices_hands_float16_slices(tmp_path, rng):
    a = cube(rng, (6, 10, 12), ">f2")
    np.save(tmp_path / "a.npy", a)
    got = mmcompute.map_slices(lambda s: (s.dtype.str, float(np.nansum(s, dtype=np.float64))),
                               tmp_path / "a.npy", n_jobs=2)
    assert [d for d, _ in got] == ["<f2"] * 6
    np.testing.assert_array_equal([t for _, t in got],
                                  np.nansum(a.astype(np.float64), axis=(1, 2)))


def test_the_cli_writes_float16_results_as_numpy_prints_them(tmp_path, rng, cli):
    a = cube(rng, (4, 9, 11))
    np.save(tmp_path / "a.npy", a)
    cli("reduce", tmp_path / "a.npy", "--op", "nanmin,nanmax,mean", "-o", tmp_path / "r.csv")
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0] == "nanmin,nanmax,mean"
    for i, row in enumerate(rows[1:]):
        lo, hi, _ = row.split(",")
        # The shortest text that reads back as the float16: numpy's repr's decimal value.
        assert float(lo) == float(str(np.nanmin(a[i]))), row
        assert float(hi) == float(str(np.nanmax(a[i]))), row
        assert np.float16(lo) == np.nanmin(a[i]) and np.float16(hi) == np.nanmax(a[i])
    cli("reduce", tmp_path / "a.npy", "--op", "max,histogram", "--range=-500,500", "--bins", "5",
        "-o", tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["max"]["dtype"] == "f16" and doc["bin_edges"]["dtype"] == "f16"
    assert [np.float16(x) for x in doc["bin_edges"]["data"]] == \
        list(np.histogram(a, bins=5, range=(-500, 500))[1])
    cli("reduce", tmp_path / "a.npy", "--op", "max,median", "--select", "1:3,::-2,:",
        "-o", tmp_path / "r.npz")
    z = np.load(tmp_path / "r.npz")
    view = a[1:3, ::-2, :]
    np.testing.assert_array_equal(z["max"], view.max(axis=(1, 2)))
    assert z["max"].dtype == np.float16
    np.testing.assert_array_equal(z["median"], np.median(view.astype(np.float64), axis=(1, 2)))
