"""Python manners: Ctrl-C raises KeyboardInterrupt and stops the workers; other threads run
while the engine works; info and convert; help() reads."""
import json
import os
import pydoc
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import zarr

import mmcompute
from conftest import values

# A reduction long enough to be interrupted: the exact median of 8 GiB of float64 zeros from a
# sparse file (holes read as zeros), which takes seconds of several passes.
LONG_REDUCE = """
import os, sys, mmcompute
path = sys.argv[1]
with open(path, "wb") as f:
    f.truncate(8 << 30)
print("ready", os.getpid(), flush=True)
try:
    mmcompute.reduce(path, "median", axis=None, dtype="<f8", shape=(1 << 30,), n_jobs=2)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def test_sigint_raises_keyboardinterrupt_and_stops_the_workers(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", LONG_REDUCE, str(tmp_path / "zeros.f8")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    line = proc.stdout.readline().split()
    assert line[0] == "ready", proc.stderr.read()
    # Wait until the workers run, then interrupt.
    deadline = time.monotonic() + 30
    while not children_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = children_of(proc.pid)
    assert workers, "the reduction forked its workers"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert "KeyboardInterrupt" in out and "finished" not in out
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_other_threads_run_while_the_engine_works(tmp_path, rng):
    a = values(rng, "<f4", (64, 256, 256))
    path = tmp_path / "a.npy"
    np.save(path, a)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        before = len(ticks)
        for _ in range(3):
            mmcompute.reduce(path, "median", (1, 2), n_jobs=1, backend="serial")
        during = len(ticks) - before
    finally:
        stop.set()
        t.join()
    assert during > 0, "the GIL is released while the engine works"


def test_info_and_convert(tmp_path, rng):
    a = values(rng, "<u2", (5, 12, 10))
    src = tmp_path / "a.npy"
    np.save(src, a)
    got = mmcompute.info(src)
    assert got == {"path": str(src), "format": "npy", "dtype": "<u2", "shape": (5, 12, 10),
                   "order": "C", "nbytes": a.nbytes, "chunks": None, "dims": None,
                   "attributes": {}}
    store = tmp_path / "a.zarr"
    stats = mmcompute.convert(src, store, chunks=(2, 6, 10), compressor="zstd")
    assert stats["nbytes"] == a.nbytes and stats["chunks"] == (2, 6, 10)
    np.testing.assert_array_equal(zarr.open(str(store), mode="r")[...], a)
    assert mmcompute.info(store)["chunks"] == (2, 6, 10)
    try:
        mmcompute.convert(src, store)
        raise AssertionError("an existing destination is refused")
    except mmcompute.IoError as e:
        assert "exists" in str(e)
    back = tmp_path / "back.npy"
    mmcompute.convert(store, back)
    np.testing.assert_array_equal(np.load(back), a)
    # An in-memory array converts too (through its memfd copy).
    mem = tmp_path / "mem.npy"
    mmcompute.convert(a[:, ::2], mem)
    np.testing.assert_array_equal(np.load(mem), a[:, ::2])
    # zarr v3, sharded: read back by us and reduced as numpy does.
    v3 = tmp_path / "a3.zarr"
    stats = mmcompute.convert(src, v3, zarr_format=3, chunks=(1, 3, 5), shards=(2, 6, 10),
                              compressor="zlib")
    assert stats["chunks"] == (1, 3, 5) and stats["shards"] == (2, 6, 10)
    assert json.load(open(v3 / "zarr.json"))["codecs"][0]["name"] == "sharding_indexed"
    np.testing.assert_array_equal(mmcompute.reduce(v3, "max", axis=(1, 2)), a.max(axis=(1, 2)))
    mmcompute.convert(v3, tmp_path / "back3.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "back3.npy"), a)
    try:
        mmcompute.convert(src, tmp_path / "v2.zarr", shards=(2, 6, 10))
        raise AssertionError("shards need zarr v3")
    except mmcompute.InvalidArgumentError as e:
        assert "--zarr-format 3" in str(e) or "zarr v3" in str(e)


def test_help_reads_well():
    text = pydoc.render_doc(mmcompute.reduce, renderer=pydoc.plaintext)
    for words in ("source:", "axis:", "n_jobs:", "KeyboardInterrupt", "numpy"):
        assert words in text
    assert mmcompute.kernel_isa() in ("portable", "avx2", "avx512")


def test_progress_callback_sees_every_task_and_its_exception_stops_the_call(tmp_path, rng):
    a = values(rng, "<f4", (64, 256, 256))  # 16 MiB: several 8 MiB tasks
    path = tmp_path / "a.npy"
    np.save(path, a)
    calls = []
    mmcompute.reduce(path, "mean", (1, 2), progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] > 1
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    def boom(done, total):
        raise RuntimeError(f"stop at {done} of {total}")

    try:
        mmcompute.reduce(path, "mean", (1, 2), progress=boom)
        raise AssertionError("the callback's exception stops the call")
    except RuntimeError as e:
        assert str(e).startswith("stop at")


def test_cache_answers_a_repeated_call_without_computing(tmp_path, rng):
    a = values(rng, "<u2", (16, 128, 128))
    path = tmp_path / "a.npy"
    np.save(path, a)
    cache = mmcompute.Cache(tmp_path / "cache")
    ticks = []
    first = cache.reduce(path, "mean,max", (1, 2), progress=lambda d, t: ticks.append(d))
    assert ticks, "a miss computes"
    assert len(cache.ls()) == 2 and all(e["valid"] for e in cache.ls())
    ticks.clear()
    again = mmcompute.reduce(path, "mean,max", (1, 2), cache=str(tmp_path / "cache"),
                             progress=lambda d, t: ticks.append(d))
    assert not ticks, "a hit reads the stored answer"
    assert again["mean"].tobytes() == first["mean"].tobytes()
    assert again["max"].tobytes() == first["max"].tobytes()
    # An in-memory array has no identity to key on: computed, with a CacheWarning.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = cache.reduce(a, "max", (1, 2))
    ours = [w for w in seen if issubclass(w.category, mmcompute.CacheWarning)]
    assert ours and ours[0].filename == __file__, "the warning points at the caller's line"
    np.testing.assert_array_equal(got, a.max(axis=(1, 2)))
    assert len(cache.ls()) == 2
    removed = cache.prune(0)
    assert removed["removed_entries"] == 2 and cache.ls() == []
    cache.reduce(path, "min", 0)
    assert cache.clear()["removed_entries"] == 1
