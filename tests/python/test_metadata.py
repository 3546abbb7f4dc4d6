"""Metadata that survives convert (issue 18): attributes, axis names and fill values carried
from zarr and HDF5 sources into zarr v2 and v3 stores and HDF5 datasets; zarr groups with
consolidated metadata that xarray opens; `info` on groups and attributes."""
import json
import os
import subprocess

import h5py
import numpy as np
import pytest
import xarray as xr

import mmcompute
from conftest import CLI, values


def run_cli(*args, ok=True):
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def xarray_source(tmp_path, rng):
    """A dataset as xarray writes it: named axes, attributes of several kinds, NaN fill."""
    a = values(rng, "<f4", (6, 5, 4))
    a[0, 0, 0] = np.nan
    ds = xr.Dataset({"temp": (("time", "y", "x"), a,
                              {"units": "K", "scale": 2.5, "flags": [1, 2, 3], "ok": True})})
    path = tmp_path / "src.zarr"
    ds.to_zarr(path, mode="w", encoding={"temp": {"chunks": (2, 5, 4)}})
    return ds, path


def h5py_source(tmp_path, rng):
    """An HDF5 dataset with attributes and dimension scales attached, as h5py makes them."""
    a = values(rng, "<i2", (4, 7, 3))
    path = tmp_path / "src.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("images", data=a, chunks=(2, 7, 3), compression="gzip")
        d.attrs["units"] = "counts"
        d.attrs["gain"] = 1.5
        d.attrs["exposure"] = np.int32(7)
        d.attrs["wavelengths"] = np.array([450.0, 550.0, 650.0])
        d.attrs["names"] = np.array([b"r", b"g"], dtype="S1")
        for i, name in enumerate(["frame", "row", "col"]):
            f[name] = np.arange(a.shape[i])
            f[name].make_scale(name)
            d.dims[i].attach_scale(f[name])
    return a, path


def test_zarr_attributes_axis_names_and_fill_survive_into_a_group_xarray_opens(tmp_path, rng):
    ds, src = xarray_source(tmp_path, rng)
    out = tmp_path / "out.zarr"
    run_cli("convert", f"{src}/temp", f"{out}:/temp", "--compressor", "zstd")
    assert json.load(open(out / ".zgroup")) == {"zarr_format": 2}
    got = xr.open_zarr(out, consolidated=True)  # .zmetadata is read, not the folders
    xr.testing.assert_identical(got["temp"].load(), ds["temp"])
    assert json.load(open(out / "temp" / ".zarray"))["fill_value"] == "NaN"
    # v3: attributes and dimension_names in zarr.json; read back by us.
    v3 = tmp_path / "v3.zarr"
    run_cli("convert", f"{src}/temp", v3, "--zarr-format", "3")
    meta = json.load(open(v3 / "zarr.json"))
    assert meta["dimension_names"] == ["time", "y", "x"]
    assert meta["attributes"] == {"units": "K", "scale": 2.5, "flags": [1, 2, 3], "ok": True}
    info = json.loads(run_cli("info", v3, "--json").stdout)
    assert info["dims"] == ["time", "y", "x"] and info["attributes"]["units"] == "K"
    got = mmcompute.info(f"{out}:/temp")
    assert got["dims"] == ("time", "y", "x") and got["attributes"]["flags"] == [1, 2, 3]


def test_hdf5_attributes_and_dimension_scales_travel_both_ways(tmp_path, rng):
    a, src = h5py_source(tmp_path, rng)
    out = tmp_path / "out.zarr"
    run_cli("convert", f"{src}:/images", f"{out}:/images")
    got = xr.open_zarr(out)["images"]
    assert got.dims == ("frame", "row", "col")
    np.testing.assert_array_equal(got.values, a)
    assert got.attrs["units"] == "counts" and got.attrs["gain"] == 1.5
    assert got.attrs["exposure"] == 7 and got.attrs["names"] == ["r", "g"]
    assert got.attrs["wavelengths"] == [450.0, 550.0, 650.0]
    # Back into HDF5: the attributes as h5py reads them.
    h5 = tmp_path / "back.h5"
    run_cli("convert", f"{out}:/images", f"{h5}:/images")
    with h5py.File(h5, "r") as f:
        attrs = dict(f["images"].attrs)
        np.testing.assert_array_equal(f["images"][...], a)
    assert attrs["units"] == "counts" and attrs["gain"] == 1.5 and attrs["exposure"] == 7
    np.testing.assert_array_equal(attrs["wavelengths"], [450.0, 550.0, 650.0])
    assert list(attrs["names"]) == ["r", "g"]


def test_hdf5_outputs_open_in_xarray_with_their_names_and_attributes(tmp_path, rng):
    ds, src = xarray_source(tmp_path, rng)
    a, h5src = h5py_source(tmp_path, rng)
    out = tmp_path / "out.h5"
    run_cli("convert", f"{src}/temp", f"{out}:/temp")
    run_cli("convert", f"{h5src}:/images", f"{out}:/images", "--compressor", "zlib")
    got = xr.open_dataset(out, engine="h5netcdf")
    assert got["temp"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(got["temp"].values, ds["temp"].values)
    want = dict(ds["temp"].attrs, ok=1)  # a boolean attribute is stored as int8 in HDF5
    assert {k: (list(v) if isinstance(v, np.ndarray) else v)
            for k, v in got["temp"].attrs.items()} == want
    assert got["images"].dims == ("frame", "row", "col")
    np.testing.assert_array_equal(got["images"].values, a)
    assert got["images"].attrs["units"] == "counts"


def test_members_join_an_existing_group_and_its_consolidated_metadata(tmp_path, rng):
    _, src = xarray_source(tmp_path, rng)
    a, h5 = h5py_source(tmp_path, rng)
    out = tmp_path / "out.zarr"
    run_cli("convert", f"{src}/temp", f"{out}:/temp")
    mmcompute.convert(f"{h5}:/images", f"{out}:/images", chunks=(1, 7, 3))
    members = json.load(open(out / ".zmetadata"))["metadata"]
    assert {"temp/.zarray", "temp/.zattrs", "images/.zarray", "images/.zattrs"} <= set(members)
    ds = xr.open_zarr(out, consolidated=True)
    assert set(ds.data_vars) == {"temp", "images"}
    np.testing.assert_array_equal(ds["images"].values, a)
    listing = run_cli("info", out).stdout
    assert "zarr v2 group, 2 members" in listing and "images" in listing and "temp" in listing
    entries = json.loads(run_cli("info", out, "--json").stdout)
    assert [e["path"] for e in entries] == ["images", "temp"]
    assert entries[0]["shape"] == [4, 7, 3] and entries[0]["dtype"] == "<i2"
    # A member already there needs --overwrite; then it is replaced alone.
    r = run_cli("convert", f"{h5}:/images", f"{out}:/temp", ok=False)
    assert r.returncode != 0 and "exists" in r.stderr
    run_cli("convert", f"{h5}:/images", f"{out}:/temp", "--overwrite")
    np.testing.assert_array_equal(xr.open_zarr(out)["temp"].values, a)
    np.testing.assert_array_equal(mmcompute.reduce(f"{out}:/temp", "sum", axis=(1, 2)),
                                  a.sum(axis=(1, 2)))


def test_bad_member_destinations_leave_nothing_behind(tmp_path, rng):
    a, h5 = h5py_source(tmp_path, rng)
    plain = tmp_path / "plain.zarr"
    run_cli("convert", f"{h5}:/images", plain)  # an array, not a group
    for dest, words in [(f"{plain}:/x", "not a zarr group"),
                        (f"{tmp_path}/g.zarr:/a/b", "one name"),
                        (f"{tmp_path}/g.zarr:/.hidden", "one name")]:
        r = run_cli("convert", f"{h5}:/images", dest, ok=False)
        assert r.returncode != 0 and words in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
    # A failure while the new group is written (a level zstd refuses) leaves no store.
    r = run_cli("convert", f"{h5}:/images", f"{tmp_path}/new.zarr:/images", "--compressor",
                "zstd", "--level", "99", ok=False)
    assert r.returncode != 0
    assert sorted(os.listdir(tmp_path)) == ["plain.zarr", "src.h5"]
    # A v2 group gets no v3 member.
    run_cli("convert", f"{h5}:/images", f"{tmp_path}/g2.zarr:/a")
    r = run_cli("convert", f"{h5}:/images", f"{tmp_path}/g2.zarr:/b", "--zarr-format", "3",
                ok=False)
    assert r.returncode != 0 and "--zarr-format 2" in r.stderr


def test_attributes_other_tools_write_do_not_break_a_convert(tmp_path, rng):
    # zarr-python and xarray write bare NaN into .zattrs; JSON has none: left out, with the rest.
    a = values(rng, "<f4", (3, 4))
    src = tmp_path / "nan.zarr"
    import zarr
    z = zarr.open_array(str(src), mode="w", shape=a.shape, chunks=(2, 4), dtype=a.dtype)
    z[...] = a
    z.attrs.update({"missing_value": float("nan"), "valid_max": float("inf"), "units": "m",
                    "range": [0.0, float("nan")]})
    run_cli("convert", src, tmp_path / "plain.npy")  # attributes are not even read for .npy
    run_cli("convert", src, f"{tmp_path}/g.zarr:/v")
    got = json.load(open(tmp_path / "g.zarr" / "v" / ".zattrs"))
    assert got == {"units": "m", "range": [0.0, None], "_ARRAY_DIMENSIONS": ["dim_0", "dim_1"]}
    # An HDF5 string attribute that is not UTF-8: read with U+FFFD, never an error.
    h5 = tmp_path / "latin.h5"
    with h5py.File(h5, "w") as f:
        f["d"] = a
        f["d"].attrs["place"] = np.bytes_(b"caf\xe9")
    info = json.loads(run_cli("info", f"{h5}:/d", "--json").stdout)
    assert info["attributes"]["place"] == "caf\ufffd"


def test_fill_values_travel_into_zarr_and_hdf5(tmp_path, rng):
    import zarr
    a = values(rng, ">i2", (5, 6))
    src = tmp_path / "f.zarr"
    z = zarr.open_array(str(src), mode="w", shape=a.shape, chunks=(2, 3), dtype=a.dtype,
                        fill_value=-7)
    z[:2] = a[:2]  # the rest stays unwritten: the fill value
    run_cli("convert", src, tmp_path / "out.zarr", "--zarr-format", "3")
    assert json.load(open(tmp_path / "out.zarr" / "zarr.json"))["fill_value"] == -7
    run_cli("convert", src, f"{tmp_path}/out.h5:/d", "--chunks", "2,3")
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["d"].fillvalue == -7
        np.testing.assert_array_equal(f["d"][...], z[...])


def test_a_coordinate_into_an_existing_hdf5_file_becomes_its_own_scale(tmp_path, rng):
    # An xarray coordinate variable: a 1-d array named like its axis.
    x = np.arange(5, dtype="<f8")
    ds = xr.Dataset(coords={"x": ("x", x)})
    src = tmp_path / "coord.zarr"
    ds.to_zarr(src, mode="w")
    h5 = tmp_path / "existing.h5"
    with h5py.File(h5, "w") as f:
        f["keep"] = np.ones(3)
    run_cli("convert", f"{src}/x", f"{h5}:/x")
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["keep"][...], np.ones(3))
        assert h5py.h5ds.is_scale(f["x"].id)
        np.testing.assert_array_equal(f["x"][...], x)
    # /keep, h5py's, names no axes: phony names for it; x is a coordinate.
    got = xr.open_dataset(h5, engine="h5netcdf", phony_dims="sort")
    assert "x" in got.coords
    np.testing.assert_array_equal(got["x"].values, x)
