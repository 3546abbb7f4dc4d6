"""Shared fixtures of the Python module's tests: the CLI beside the module, and arrays."""
import os
import subprocess

import numpy as np
import pytest

import mmcompute

CLI = os.environ.get("MMC_CLI", "")


@pytest.fixture
def cli():
    """Runs `mmcompute ARGS...` (the build's CLI); returns its stdout."""
    if not CLI:
        pytest.fail("MMC_CLI names the mmcompute executable (ctest sets it)")

    def run(*args):
        r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout

    return run


@pytest.fixture
def rng():
    return np.random.default_rng(20261207)


def values(rng, dtype, shape):
    """Random values of `dtype` with the ranges the ops care about (negatives, repeats)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.4
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -1000), min(info.max, 1000)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 50 + 3).astype(dtype)


assert mmcompute  # the module under test imports
