"""map_slices: a Python function over every slice, in forked workers, threads or the caller;
results against the list numpy and joblib's recipe give, zero-copy views of the file, the
worker's exceptions raised here, a killed worker, Ctrl-C, output, and forking beside busy
Python threads."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import zarr

import mmcompute
from conftest import values

BACKENDS = ["process", "thread", "serial"]


def expected(fn, a, axis):
    a = np.asarray(a)
    return [fn(np.take(a, i, axis=axis)) for i in range(a.shape[axis])]


def same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w), (type(g), type(w))
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
        else:
            assert g == w or (g != g and w != w), (g, w)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_results_are_those_of_a_loop_over_the_slices(tmp_path, rng, backend, axis):
    a = values(rng, np.int16, (7, 5, 6))
    np.save(tmp_path / "a.npy", a)
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    for fn in (np.mean, np.max, lambda s: s.astype(np.float32) * 0.5, lambda s: int(s.sum()),
               lambda s: float(s.std()), lambda s: {"shape": s.shape, "first": int(s.flat[0])},
               lambda s: None, lambda s: bool(s.any())):
        # Small batches: several tasks, so results from several workers come back in order.
        got = mmcompute.map_slices(fn, m, axis=axis, backend=backend, n_jobs=2, batch_bytes=100)
        same(got, expected(fn, a, axis))


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_every_layout_and_store_gives_the_slices_numpy_gives(tmp_path, rng, backend):
    a = values(rng, np.float64, (6, 4, 5))
    fn = np.copy  # the slice itself, as numpy has it
    sources = {
        "c": a,
        "fortran": np.asfortranarray(a),
        "big-endian": a.astype(">f8"),
        "strided": a[::2, :, ::-1],
    }
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("x", data=a, chunks=(2, 2, 5), compression="gzip")
    z = zarr.open(str(tmp_path / "a.zarr"), mode="w", shape=a.shape, chunks=(4, 3, 2),
                  dtype=a.dtype)
    z[...] = a
    for name, src in sources.items():
        for axis in (0, 2):
            got = mmcompute.map_slices(fn, src, axis=axis, backend=backend, batch_bytes=64)
            want = expected(fn, src, axis)
            want = [w.astype(w.dtype.newbyteorder("=")) for w in want]
            same(got, want)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        same(mmcompute.map_slices(fn, f["x"], axis=1, backend=backend), expected(fn, a, 1))
    same(mmcompute.map_slices(fn, z, axis=0, backend=backend, batch_bytes=1), expected(fn, a, 0))
    same(mmcompute.map_slices(fn, str(tmp_path / "a.zarr"), axis=2, backend=backend),
         expected(fn, a, 2))


def test_slices_of_a_memmap_are_read_only_views_of_the_file_itself(tmp_path, rng):
    a = values(rng, np.uint8, (8, 64, 64))
    path = tmp_path / "cube.npy"
    np.save(path, a)

    def where(s):
        # The mapping that holds the slice's first byte, in this worker's address space.
        address = s.ctypes.data
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= address < hi:
                    return (fields[5] if len(fields) > 5 else "", s.flags.writeable,
                            s.flags.owndata, os.getpid())
        return ("", s.flags.writeable, s.flags.owndata, os.getpid())

    got = mmcompute.map_slices(where, np.load(path, mmap_mode="r"), n_jobs=2, batch_bytes=4096)
    assert {g[0] for g in got} == {str(path)}
    assert not any(g[1] for g in got) and not any(g[2] for g in got)
    assert os.getpid() not in {g[3] for g in got}  # forked workers ran fn


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_exception_is_raised_here_with_the_workers_traceback(tmp_path, backend):
    a = np.arange(40, dtype=np.int32).reshape(10, 4)

    def check(s):
        if s[0] == 24:
            raise KeyError(f"no image at {int(s[0])}")
        return int(s[0])

    with pytest.raises(KeyError) as info:
        mmcompute.map_slices(check, a, backend=backend, n_jobs=2, batch_bytes=16)
    assert info.value.args == ("no image at 24",)
    cause = info.value.__cause__
    assert isinstance(cause, mmcompute.RemoteTraceback)
    assert "slice 6" in cause.text and "in check" in cause.text
    assert 'raise KeyError(f"no image at {int(s[0])}")' in cause.text


def test_an_exception_that_does_not_unpickle_becomes_taskfailederror():
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}-{b}")

    def fail(s):
        raise Odd(1, 2)

    with pytest.raises(mmcompute.TaskFailedError, match=r"slice 0 raised in a worker: .*Odd: 1-2") as info:
        mmcompute.map_slices(fail, np.zeros((3, 2)), n_jobs=1)
    assert "Odd" in info.value.__cause__.text


def test_a_result_that_does_not_pickle_raises_the_picklers_error():
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)) as info:
        mmcompute.map_slices(lambda s: (lambda: 1), np.zeros((3, 2)), n_jobs=2)
    assert "slice" in info.value.__cause__.text


def test_a_killed_worker_raises_workerlosterror_naming_it(tmp_path):
    def die(s):
        if s[0] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    with pytest.raises(mmcompute.WorkerLostError, match=r"worker \d+ \(pid \d+\).*SIGKILL"):
        mmcompute.map_slices(die, np.arange(8.0).reshape(8, 1), n_jobs=2, batch_bytes=8)
    # The pool is gone with the call: the next one runs.
    assert mmcompute.map_slices(lambda s: int(s[0]), np.arange(3).reshape(3, 1)) == [0, 1, 2]


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    a = np.zeros((3, 4))
    with pytest.raises(TypeError, match="callable"):
        mmcompute.map_slices(42, a)
    with pytest.raises(ValueError, match="axis 2 is out of range for a 2-d array"):
        mmcompute.map_slices(np.mean, a, axis=2)
    with pytest.raises(ValueError, match="0-d array"):
        mmcompute.map_slices(np.mean, np.float64(3.0))
    with pytest.raises(ValueError, match="backend"):
        mmcompute.map_slices(np.mean, a, backend="gpu")
    assert mmcompute.map_slices(np.mean, np.zeros((0, 4))) == []


def test_progress_sees_every_task():
    seen = []
    mmcompute.map_slices(np.sum, np.ones((12, 8)), batch_bytes=64, n_jobs=2,
                         progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (12, 12) and [d for d, _ in seen] == list(range(1, 13))


# Scripts run in a fresh interpreter: what they print must arrive, and a hang fails by timeout.
PRINTS = """
import numpy as np, mmcompute
def show(s):
    print("slice", int(s[0]))
    return 0
mmcompute.map_slices(show, np.arange(20).reshape(20, 1), n_jobs=2, batch_bytes=8)
print("done")
"""

# A thread that holds the GIL most of the time (a pure-Python loop) while workers are forked
# again and again: each fork must take the GIL (CPython's fork protocol), or a child could
# start with the GIL owned by a thread it does not have, and hang at its first Python call.
BUSY_THREAD = """
import threading, numpy as np, mmcompute
stop = False
def spin():
    n = 0
    while not stop:
        n += 1
t = threading.Thread(target=spin)
t.start()
try:
    for _ in range(30):
        r = mmcompute.map_slices(lambda s: float(s.sum()), np.ones((6, 10)), n_jobs=3,
                                 batch_bytes=80)
        assert r == [10.0] * 6, r
finally:
    stop = True
    t.join()
print("ok")
"""

LONG_MAP = """
import os, sys, time, numpy as np, mmcompute
print("ready", flush=True)
try:
    mmcompute.map_slices(lambda s: time.sleep(0.5), np.zeros((200, 1)), n_jobs=2, batch_bytes=8)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""


def run_script(script, timeout=120):
    # Python's buffers as a program has them with stdout on a pipe (block-buffered): those are
    # the ones a worker that ends with _exit would drop.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_what_fn_prints_in_a_worker_reaches_a_pipe():
    r = run_script(PRINTS)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted(f"slice {i}" for i in range(20)) and lines[-1] == "done"


def test_forks_beside_a_busy_python_thread_do_not_hang():
    r = run_script(BUSY_THREAD)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_sigint_stops_map_slices_and_its_workers():
    proc = subprocess.Popen([sys.executable, "-c", LONG_MAP], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                workers = [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass
    assert workers, "map_slices forked its workers"
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 3, (out, err)
    assert "KeyboardInterrupt" in out and "finished" not in out
    assert time.monotonic() - start < 5
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_an_in_memory_array_is_read_in_place_not_copied(rng):
    # Workers forked per call share the caller's pages: a slice's address is inside the array.
    a = values(rng, np.float32, (6, 50, 40))
    lo, hi = a.ctypes.data, a.ctypes.data + a.nbytes
    for backend in BACKENDS:
        got = mmcompute.map_slices(lambda s: s.ctypes.data, a, backend=backend, n_jobs=2)
        assert all(lo <= p < hi for p in got), backend
        assert got == [lo + i * 50 * 40 * 4 for i in range(6)]
    # reduce makes no memfd copy of it either (a warm Pool's workers need one: it has one).
    def memfds(done, total):
        seen.update(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                    if os.path.exists(f"/proc/self/fd/{fd}"))

    seen = set()
    mmcompute.reduce(a, "mean", (1, 2), n_jobs=2, progress=memfds)
    assert not any("mmcompute-array" in link for link in seen), seen
    with mmcompute.Pool(n_jobs=2) as pool:
        seen.clear()
        np.testing.assert_array_equal(pool.reduce(a, "mean", (1, 2), progress=memfds),
                                      mmcompute.reduce(a, "mean", (1, 2)))
        assert any("mmcompute-array" in link for link in seen), seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_selections_with_negative_steps_give_numpys_slices(tmp_path, rng, backend):
    a = values(rng, np.int32, (7, 5, 6))
    np.save(tmp_path / "c.npy", a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    z = zarr.open(str(tmp_path / "a.zarr"), mode="w", shape=a.shape, chunks=(2, 3, 4),
                  dtype=a.dtype)
    z[...] = a
    for select in (np.s_[::-1], np.s_[:, ::-1], np.s_[1:6:2, :, 5:0:-2], np.s_[::-2, 3, ::-1]):
        view = a[select]
        for src in (a, tmp_path / "c.npy", tmp_path / "f.npy", z):
            for axis in range(view.ndim):
                got = mmcompute.map_slices(np.copy, src, axis=axis, select=select,
                                           backend=backend, batch_bytes=40)
                same(got, expected(np.copy, view, axis))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_slice_fn_keeps_stays_valid_after_the_call(tmp_path, rng, backend):
    a = values(rng, np.float64, (5, 300, 7))
    np.save(tmp_path / "a.npy", a)
    # In place (a C-order file, memory lent), and from task buffers (F order, other axes).
    for src, axis in ((a, 0), (tmp_path / "a.npy", 0), (np.asfortranarray(a), 0), (a, 2)):
        kept = []
        mmcompute.map_slices(kept.append, src, axis=axis, backend=backend, batch_bytes=4096)
        if backend == "process":
            assert kept == []  # the workers' lists
            continue
        # (Threads append in any order.)
        want = [np.take(a, i, axis=axis) for i in range(a.shape[axis])]
        assert len(kept) == len(want)
        for s in kept:
            assert sum(np.array_equal(s, w) for w in want) == 1
            assert not s.flags.writeable


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_slices_and_zero_dimensional_ones(backend):
    got = mmcompute.map_slices(lambda s: s.shape, np.zeros((3, 0)), backend=backend)
    assert got == [(0,), (0,), (0,)]
    got = mmcompute.map_slices(lambda s: s.shape, np.zeros((2, 0, 3)), axis=-1, backend=backend)
    assert got == [(2, 0)] * 3
    got = mmcompute.map_slices(np.copy, np.arange(3.0), backend=backend)
    same(got, [np.array(0.0), np.array(1.0), np.array(2.0)])
    got = mmcompute.map_slices(lambda s: np.array(3.5), np.zeros((2, 2)), backend=backend)
    same(got, [np.array(3.5)] * 2)


def test_a_result_that_does_not_pickle_says_so():
    with pytest.raises(TypeError) as info:
        mmcompute.map_slices(lambda s: (x for x in s), np.zeros((3, 2)), backend="serial")
    assert "slice 0 returned a generator, which cannot be sent back" in info.value.__cause__.text


INTERRUPTED = """
import sys, time, numpy as np, mmcompute
backend = sys.argv[1]
def work(s):
    if backend == "serial":
        while True:
            pass
    time.sleep(0.2)
print("ready", flush=True)
try:
    mmcompute.map_slices(work, np.zeros((400, 1)), backend=backend, n_jobs=2, batch_bytes=8)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""


@pytest.mark.parametrize("backend", ["serial", "thread"])
def test_sigint_stops_the_serial_and_thread_backends(backend):
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, backend], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a process that did not stop would spin on
        proc.wait()
    assert proc.returncode == 3, (out, err)
    assert "KeyboardInterrupt" in out and "finished" not in out
    assert time.monotonic() - start < 5
