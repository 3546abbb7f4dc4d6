"""mmcompute.Pool (warm workers across calls) and leaving nothing behind: results bitwise
those of reduce() for every kind of source, workers kept between calls and replaced when one
dies, threads sharing a pool, calls from inside joblib and multiprocessing workers, and no
process, descriptor or /dev/shm entry left by any call."""
import multiprocessing
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest
import zarr
from joblib import Parallel, delayed

import mmcompute
from conftest import values

OPS = ["mean", "std", "min", "max", "argmax", "count"]


def children(pid=None):
    pid = pid or os.getpid()
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass
    return found


def descendants():
    out, todo = [], children()
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            todo += children(pid)
        except FileNotFoundError:
            pass
    return sorted(out)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def sources(tmp_path, a):
    np.save(tmp_path / "a.npy", a)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("c", data=a)
        f.create_dataset("z", data=a, chunks=(2, 3, 4), compression="gzip")
    z = zarr.open(str(tmp_path / "a.zarr"), mode="w", shape=a.shape, chunks=(3, 4, 5),
                  dtype=a.dtype)
    z[...] = a
    return {
        "npy path": str(tmp_path / "a.npy"),
        "memmap": np.load(tmp_path / "a.npy", mmap_mode="r"),
        "in-memory": np.asfortranarray(a),
        "hdf5 contiguous": str(tmp_path / "a.h5") + ":/c",
        "hdf5 chunked": str(tmp_path / "a.h5") + ":/z",
        "zarr": z,
    }


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_pool_results_are_bitwise_those_of_reduce(tmp_path, rng, backend):
    a = values(rng, np.float32, (9, 10, 11))
    with mmcompute.Pool(n_jobs=2, backend=backend) as pool:
        assert pool.n_jobs == 2
        for name, src in sources(tmp_path, a).items():
            for axis in [(1, 2), 0, None]:
                want = mmcompute.reduce(src, OPS, axis, n_jobs=1, backend="serial")
                got = pool.reduce(src, OPS, axis)
                for op in OPS:
                    assert got[op].dtype == want[op].dtype, (name, op)
                    assert got[op].tobytes() == want[op].tobytes(), (name, op, axis)
            p = pool.reduce(src, "percentile", (1, 2), q=[5, 50])
            np.testing.assert_array_equal(p, mmcompute.reduce(src, "percentile", (1, 2),
                                                              q=[5, 50]))


def test_a_process_pool_keeps_its_workers_and_replaces_a_dead_one(tmp_path, rng):
    a = values(rng, np.uint8, (8, 32, 32))
    np.save(tmp_path / "a.npy", a)
    want = a.reshape(8, -1).mean(axis=1)
    before = set(descendants())
    pool = mmcompute.Pool(n_jobs=2)
    for _ in range(3):
        np.testing.assert_array_equal(pool.reduce(tmp_path / "a.npy", "mean", (1, 2)), want)
    ours = set(descendants()) - before
    assert len(ours) == 3, ours  # the fork server and its two workers
    for _ in range(20):
        pool.reduce(tmp_path / "a.npy", "mean", (1, 2))
    assert set(descendants()) - before == ours  # no fork per call
    server = next(p for p in ours if p in children())
    victim = children(server)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(victim) and time.monotonic() < deadline:
        time.sleep(0.01)
    # A call may meet the dead worker (WorkerLostError) once; the pool goes on with a new one.
    for _ in range(2):
        try:
            np.testing.assert_array_equal(pool.reduce(tmp_path / "a.npy", "mean", (1, 2)), want)
        except mmcompute.WorkerLostError as e:
            assert "SIGKILL" in str(e)
    np.testing.assert_array_equal(pool.reduce(tmp_path / "a.npy", "mean", (1, 2)), want)
    pool.close()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in ours) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(alive(p) for p in ours)
    assert pool.closed and repr(pool) == "Pool(closed)"
    with pytest.raises(mmcompute.InvalidArgumentError, match="closed"):
        pool.reduce(tmp_path / "a.npy")


def test_threads_share_a_pool(tmp_path, rng):
    arrays = [values(rng, np.int16, (6, 20, 7)) for _ in range(4)]
    errors, results = [], {}
    with mmcompute.Pool(n_jobs=2) as pool:
        def work(k):
            try:
                for _ in range(10):
                    results[k] = pool.reduce(arrays[k], "sum", (1, 2))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for k, a in enumerate(arrays):
        np.testing.assert_array_equal(results[k], a.sum(axis=(1, 2), dtype=np.int64))


def test_pool_refuses_what_is_the_pools():
    with mmcompute.Pool(n_jobs=1, backend="serial") as pool:
        with pytest.raises(TypeError, match="n_jobs"):
            pool.reduce(np.zeros((2, 2)), "sum", n_jobs=3)
        with pytest.raises(TypeError, match="unexpected"):
            pool.reduce(np.zeros((2, 2)), "sum", colour="red")
    with pytest.raises(ValueError, match="backend"):
        mmcompute.Pool(backend="gpu")


def _reduce_in_a_worker(path):
    return mmcompute.reduce(path, "mean", (1, 2), n_jobs=2).tolist()


def _map_in_a_worker(path):
    return mmcompute.map_slices(lambda s: float(s.max()), np.load(path, mmap_mode="r"), n_jobs=2)


def test_calls_from_inside_joblib_and_multiprocessing_workers(tmp_path, rng):
    a = values(rng, np.uint16, (5, 6, 7))
    np.save(tmp_path / "a.npy", a)
    path = str(tmp_path / "a.npy")
    means = a.reshape(5, -1).mean(axis=1).tolist()
    maxes = [float(x) for x in a.reshape(5, -1).max(axis=1)]
    assert Parallel(n_jobs=2)(delayed(_reduce_in_a_worker)(path) for _ in range(4)) == [means] * 4
    assert Parallel(n_jobs=2)(delayed(_map_in_a_worker)(path) for _ in range(2)) == [maxes] * 2
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(2) as mp:
            assert mp.map(_reduce_in_a_worker, [path] * 3) == [means] * 3
            assert mp.map(_map_in_a_worker, [path] * 2) == [maxes] * 2


def test_no_process_descriptor_or_shm_entry_is_left_behind(tmp_path, rng):
    a = values(rng, np.float64, (6, 40, 40))
    np.save(tmp_path / "a.npy", a)
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    shm = set(os.listdir("/dev/shm"))
    fds = set(os.listdir("/proc/self/fd"))
    procs = set(descendants())

    def fail(s):
        raise ValueError("no")

    for _ in range(3):
        # Payloads above max_nbytes go through shared segments: small max_nbytes forces them.
        mmcompute.reduce(a, ["mean", "std"], 0, n_jobs=2, max_nbytes=0)
        mmcompute.reduce(m, "median", (1, 2), n_jobs=2, max_nbytes=0)
        mmcompute.map_slices(np.copy, a, n_jobs=2, max_nbytes=0)
        with pytest.raises(ValueError):
            mmcompute.map_slices(fail, m, n_jobs=2)
        with pytest.raises(mmcompute.WorkerLostError):
            mmcompute.map_slices(lambda s: os.kill(os.getpid(), signal.SIGKILL), m, n_jobs=2)
        with mmcompute.Pool(n_jobs=2, max_nbytes=0) as pool:
            pool.reduce(a, "mean", 0)
            pool.reduce(m, "max", (1, 2))
    deadline = time.monotonic() + 10
    while any(alive(p) for p in set(descendants()) - procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [p for p in set(descendants()) - procs if alive(p)]
    assert set(os.listdir("/proc/self/fd")) == fds
    assert set(os.listdir("/dev/shm")) == shm
