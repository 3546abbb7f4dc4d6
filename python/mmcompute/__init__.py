"""mmcompute: statistics over image cubes at the memory bus's speed, from numpy.

Reductions (mean, std, min, max, count, argmax, histogram, median, percentiles, ...) over
the axes of a cube that lives in a file (.npy, raw, HDF5, zarr), in an ``np.memmap``, in an
``h5py.Dataset``, a ``zarr.Array`` or a numpy array, run by the C++ engine in forked worker
processes (or threads), with numpy's answers, bitwise the same for any ``n_jobs`` and backend,
and bitwise those of the ``mmcompute`` command line tool.

    >>> import numpy as np, mmcompute
    >>> cube = np.memmap("cube.u8", dtype=np.uint8, mode="r", shape=(2048, 1024, 1024))
    >>> means = mmcompute.reduce(cube, "mean", axis=(1, 2))       # one mean per image
    >>> stats = mmcompute.reduce("cube.npy", ["mean", "std", "max"], axis=(1, 2))
    >>> p99 = mmcompute.map_slices(lambda im: np.percentile(im, 99), cube)  # your function
    >>> with mmcompute.Pool(n_jobs=2) as pool:                   # workers kept between calls
    ...     sums = [pool.reduce(path, "sum", axis=(1, 2)) for path in paths]

The engine works with the GIL released, so other Python threads run meanwhile; Ctrl-C stops
the workers and raises KeyboardInterrupt. Its errors are Python exceptions: FileNotFoundError
for a missing file, ValueError for bad arguments, and subclasses of ``mmcompute.Error``
(CorruptError for a file whose bytes contradict its metadata, WorkerLostError, ...).
"""
from __future__ import annotations

import inspect
import mmap
import os
import pickle
import traceback  # noqa: F401 - imported before any fork: a worker reporting an exception uses it
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__all__ = [
    "reduce",
    "map_slices",
    "Pool",
    "info",
    "Cache",
    "CacheWarning",
    "convert",
    "kernel_isa",
    "Error",
    "InvalidArgumentError",
    "NotFoundError",
    "CorruptError",
    "IoError",
    "PermissionDeniedError",
    "WorkerLostError",
    "TaskTimeoutError",
    "CancelledError",
    "TaskFailedError",
    "InternalError",
]

Source = Union[str, "os.PathLike[str]", np.ndarray, Any]
Result = Union[np.ndarray, np.generic, Tuple[np.ndarray, np.ndarray], Dict[str, np.ndarray]]


class Error(Exception):
    """Base class of mmcompute's errors (the message is the command line tool's)."""


class InvalidArgumentError(Error, ValueError):
    """Something impossible was asked: a bad axis, dtype, op or option."""


class NotFoundError(Error, FileNotFoundError):
    """A file, dataset or store does not exist."""


class CorruptError(Error, ValueError):
    """A file's bytes contradict its own metadata (a truncated .npy, a damaged chunk)."""


class IoError(Error, OSError):
    """The operating system refused (open, mmap, read, write, rename)."""


class PermissionDeniedError(IoError, PermissionError):
    """The operating system refused for want of permission."""


class WorkerLostError(Error):
    """A worker process died (killed, out of memory) while it ran part of the call."""


class TaskTimeoutError(Error, TimeoutError):
    """A deadline passed."""


class CancelledError(Error):
    """The call was cancelled (SIGTERM, or an interrupt outside the main thread)."""


class TaskFailedError(Error):
    """Code inside a task raised."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as its ``__cause__``: printed above
    the exception it explains."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\"\"\"\n" + self.text.rstrip("\n") + "\n\"\"\""


class InternalError(Error):
    """A bug in mmcompute: please report it with the message."""


class CacheWarning(UserWarning):
    """The result cache could not be used for a call (it computed instead), or removed a
    damaged entry."""


_ERRORS = {
    "InvalidArgument": InvalidArgumentError,
    "NotFound": NotFoundError,
    "Corrupt": CorruptError,
    "Io": IoError,
    "WorkerLost": WorkerLostError,
    "Timeout": TaskTimeoutError,
    "Cancelled": CancelledError,
    "TaskFailed": TaskFailedError,
    "Internal": InternalError,
}


def _error(engine_error: Exception) -> Error:
    code, message = engine_error.args
    cls = _ERRORS.get(code, Error)
    if cls is IoError and "Permission denied" in message:
        cls = PermissionDeniedError
    return cls(message)


def _call(fn, *args, names=()):
    """fn(*args) with the engine's errors as this module's exceptions; `names` are _Resolved
    sources whose internal names (an in-memory array's /proc/self/fd/N) the message should give
    as what the caller passed."""
    try:
        return fn(*args)
    except _core.EngineError as e:
        error = _error(e)
        message = str(error)
        for r in names:
            if r is not None and r.label:
                message = message.replace(r.spec, r.label)
        if message != str(error):
            error = type(error)(message)
        raise error from None


class _Resolved:
    """What the engine opens for a source: a name, a raw file's description, and a memfd
    descriptor to close after the call (an in-memory array copied into a memfd), with the
    label errors give it then ("the in-memory array"); or `memory`, a C- or F-contiguous
    in-memory array the engine reads in place (spec is then only its name)."""

    def __init__(self, spec: str, raw: Optional[tuple] = None, fd: Optional[int] = None,
                 label: str = "", memory: Optional[np.ndarray] = None):
        self.spec, self.raw, self.fd, self.label = spec, raw, fd, label
        self.memory = memory

    def __enter__(self) -> "_Resolved":
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _npy_in_memfd(array: np.ndarray, name: str, label: str) -> _Resolved:
    """Writes `array` as a .npy file into an anonymous memory file (memfd: nothing named in
    /dev/shm, gone with its last descriptor or mapping), which forked workers map."""
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": order == "F",
        "shape": array.shape,
    }
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            data_offset = f.tell()
        total = data_offset + array.nbytes
        os.ftruncate(fd, total)
        if array.nbytes:
            with mmap.mmap(fd, total) as mm:
                view = np.ndarray(array.shape, array.dtype, buffer=mm, offset=data_offset,
                                  order=order)
                view[...] = array
                del view
    except BaseException:
        os.close(fd)
        raise
    return _Resolved(f"/proc/self/fd/{fd}", None, fd, label)


def _mapped_file_is(address: int, path: str) -> bool:
    """True when the mapping at `address` (/proc/self/maps) is of the file now at `path`: not
    replaced, renamed over or removed since it was mapped."""
    try:
        st = os.stat(path)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= address < hi:
                    major, minor = (int(x, 16) for x in fields[3].split(":"))
                    return (int(fields[4]) == st.st_ino and os.major(st.st_dev) == major
                            and os.minor(st.st_dev) == minor)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _npy_header(path: str):
    """(data offset, dtype, shape, fortran_order) of a .npy file, or None for another file."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
            return f.tell(), dtype, shape, fortran
    except (OSError, ValueError):
        return None


def _memmap_region(array: np.ndarray) -> Optional[_Resolved]:
    """The file an np.memmap (or a contiguous view of one) reads, for the engine to map itself:
    a raw file region, or the .npy file itself when the memmap is a whole .npy array
    (np.load(mmap_mode=...)). None when the array is not such a view, or when the file is no
    longer the one mapped (replaced or removed: the array's bytes are then copied)."""
    holder = array
    while holder is not None and not (isinstance(holder, np.memmap)
                                      and getattr(holder, "_mmap", None) is not None):
        holder = holder.base if isinstance(holder, np.ndarray) else None
    if holder is None or holder.filename is None or holder.mode == "c":
        return None  # copy-on-write: the file does not hold what the array shows
    if not (array.flags.c_contiguous or array.flags.f_contiguous) or array.size == 0:
        return None
    path = os.fspath(holder.filename)
    if not _mapped_file_is(array.ctypes.data, path):
        return None
    base = np.frombuffer(holder._mmap, dtype=np.uint8)
    start = holder.offset - holder.offset % mmap.ALLOCATIONGRANULARITY
    offset = start + (array.ctypes.data - base.ctypes.data)
    del base
    order = "C" if array.flags.c_contiguous else "F"
    npy = _npy_header(path)
    if npy is not None:
        # The engine reads a .npy file by its header only: the whole array, or a copy.
        data_offset, dtype, shape, fortran = npy
        whole = (offset == data_offset and dtype == array.dtype and tuple(shape) == array.shape
                 and (array.ndim < 2 or fortran == (order == "F")))
        return _Resolved(path) if whole else None
    return _Resolved(path, (array.dtype.str, list(array.shape), offset, order))


def _h5py_name(dataset) -> str:
    """`file:/dataset` for an h5py.Dataset, by a name that reaches the very file h5py has open
    (its descriptor, when a relative name or a renamed file would reach another)."""
    f = dataset.file
    if f.driver not in ("sec2", "stdio"):
        raise TypeError(f"mmcompute reads an h5py file stored on disk, not one in the "
                        f"'{f.driver}' driver (memory or a Python file object): write it to a "
                        "file")
    if f.mode == "r+":
        f.flush()  # what h5py wrote but keeps in its buffers
    path = os.path.abspath(f.filename)
    if f.driver == "sec2":
        fd = f.id.get_vfd_handle()
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except OSError:
            same = False
        if not same:
            path = f"/proc/self/fd/{fd}"
    return f"{path}:{dataset.name}"


def _resolve(source: Source, dtype, shape, offset: int, order: str,
             borrow: bool = False) -> _Resolved:
    """borrow: an in-memory array may be read in place (calls whose workers are forked per call
    or are threads); else it is copied into a memfd the workers can be handed."""
    if isinstance(source, (str, os.PathLike)):
        spec = os.fspath(source)
        if dtype is None and shape is None:
            return _Resolved(spec)
        if dtype is None or shape is None:
            raise InvalidArgumentError("a raw file needs both dtype and shape (numpy.memmap's)")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        return _Resolved(spec, (np.dtype(dtype).str, [_integer("shape", n, 0) for n in shape],
                                _integer("offset", offset, 0), order))
    if dtype is not None or shape is not None:
        raise InvalidArgumentError("dtype and shape describe a raw file: give them with a path")
    module = type(source).__module__
    if module.startswith("h5py"):
        import h5py
        if isinstance(source, h5py.Dataset):
            return _Resolved(_h5py_name(source))
    if module.startswith("zarr"):
        import zarr
        if isinstance(source, zarr.Array):
            root = getattr(source.store, "path", None)
            if not isinstance(root, str) or not os.path.isdir(root):
                raise TypeError("mmcompute reads a zarr.Array stored in a directory "
                                "(zarr.DirectoryStore), not one in a "
                                f"{type(source.store).__name__}")
            return _Resolved(os.path.join(root, source.path) if source.path else root)
    if isinstance(source, np.ma.MaskedArray):
        raise TypeError("a masked array: pass its data and mask apart, "
                        "reduce(a.data, ..., mask=np.ma.getmaskarray(a))")
    if isinstance(source, (list, tuple, int, float, bool, np.generic)):
        source = np.asarray(source)
    if isinstance(source, np.ndarray):
        region = _memmap_region(source)
        if region is not None:
            return region
        if borrow:
            flags = source.flags
            memory = source if flags.c_contiguous or flags.f_contiguous else \
                np.ascontiguousarray(source)
            return _Resolved("the in-memory array", memory=memory)
        return _npy_in_memfd(source, "mmcompute-array", "the in-memory array")
    raise TypeError("source must be a path (.npy, raw with dtype and shape, FILE.h5:/dataset, "
                    "a zarr store), a numpy array or memmap, an h5py.Dataset or a zarr.Array, "
                    f"not {type(source).__name__}")


def _integer(name: str, value, lo: int = -(1 << 31), hi: int = (1 << 31) - 1) -> int:
    """`value` as an int in [lo, hi], or a one-line TypeError/ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise InvalidArgumentError(f"{name} {int(value)} is out of range [{lo}, {hi}]")
    return int(value)


def _selection_text(select) -> Optional[str]:
    """numpy basic indexing (an int, a slice, or a tuple of them) as the CLI's --select text."""
    if select is None or isinstance(select, str):
        return select
    parts = select if isinstance(select, tuple) else (select,)
    out = []
    for p in parts:
        if isinstance(p, slice):
            text = ":".join("" if v is None else str(_integer("select", v, -(1 << 62), 1 << 62))
                            for v in (p.start, p.stop))
            out.append(text if p.step is None else f"{text}:{_integer('select', p.step)}")
        elif isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)):
            out.append(str(int(p)))
        elif p is Ellipsis:
            raise InvalidArgumentError("select: Ellipsis is not supported; name every axis")
        else:
            raise InvalidArgumentError(f"select: {p!r} is not an int or a slice")
    return ",".join(out)


def _option_text(value) -> Optional[str]:
    return None if value is None else str(value)


def reduce(source: Source, op: Union[str, Sequence[str]] = "mean",
           axis: Union[None, int, Sequence[int]] = None, *, ddof: int = 0, n_jobs: int = -1,
           backend: str = "process", max_nbytes: Union[str, int, None] = "1M", bins: int = 10,
           range: Optional[Tuple[float, float]] = None,
           q: Union[None, float, Sequence[float]] = None, nodata: Union[None, int, float] = None,
           mask: Union[None, str, "os.PathLike[str]", np.ndarray] = None,
           select: Union[None, str, int, slice, tuple] = None, dtype=None,
           shape: Union[None, int, Sequence[int]] = None, offset: int = 0,
           order: str = "C", cache: Union[None, str, "os.PathLike[str]", "Cache"] = None,
           progress: Union[bool, Callable[[int, int], None]] = False) -> Result:
    """Reduces `source` over `axis` with `op`, as numpy would, in parallel.

    source: a path (a .npy file; a raw file with ``dtype`` and ``shape``, and ``offset`` and
        ``order`` as numpy.memmap's; ``"FILE.h5:/dataset"``; a zarr store), a numpy array or
        np.memmap (a memmap, or a contiguous view of one, is read in place from its file;
        another array is read in place too, from this process's memory, which the workers
        forked for the call share: never pickled or copied, unless it is neither C- nor
        F-contiguous (then copied once); do not change it while the call runs), an
        h5py.Dataset (the engine opens the file itself: your handle stays valid) or a
        zarr.Array on a directory store.
    op: "sum", "mean", "min", "max", "var", "std", "count", "nansum", "nanmean", "nanmin",
        "nanmax", "nanvar", "nanstd", "any", "all", "norm", "argmin", "argmax", "histogram",
        "median", "nanmedian", "percentile", "nanpercentile"; or several ("mean,std,max" or a
        list), computed in one read of the data.
    axis: as numpy's: None reduces every axis; an int or a tuple of ints (negatives count from
        the end). The per-image mean of a (n, h, w) cube is ``axis=(1, 2)``.
    ddof: var and std divide by N - ddof.
    n_jobs: workers, joblib's meaning (-1: one per CPU; -2: all but one).
    backend: "process" (forked workers), "thread" or "serial".
    max_nbytes: payloads larger than this cross process boundaries as shared mappings ("1M",
        a byte count, or None for the default).
    bins, range: a histogram's equal-width bins over [range[0], range[1]] (the data's min and
        max without a range), as np.histogram.
    q: the percentiles (0 to 100) of "percentile" and "nanpercentile"; a single number drops
        the q axis, as np.percentile.
    nodata: elements equal to this value are left out of every op (as numpy.ma).
    mask: a bool .npy file or array broadcastable against the source; True leaves the element
        out (numpy.ma's meaning).
    select: a part of the source, numpy basic indexing: ``np.s_[::2, 100:200]`` or the CLI's
        text ``"::2,100:200"``; only its bytes are read.
    cache: a folder (or a Cache) whose stored results answer repeated calls without reading the
        data again (joblib.Memory's job): keyed by the file's identity (path, inode, size,
        mtime) and every option that changes the answer. In-memory arrays and chunked sources
        are computed without it (a CacheWarning says so).
    progress: True for a progress bar (tqdm, when installed; else a line on stderr), or a
        callable ``fn(done, total)`` called as tasks finish (an exception it raises stops the
        call and propagates).

    Returns, for one op, a numpy array (a numpy scalar when every axis is reduced), with
    numpy's result dtype for that op (float64 means, int64 counts, the input's dtype for
    min/max); for "histogram", ``(counts, bin_edges)`` as np.histogram; for several ops, a dict
    of arrays keyed by op (and "bin_edges" with a histogram). The values are bitwise those of
    ``mmcompute reduce`` with the same options, whatever n_jobs and backend.

    Raises FileNotFoundError (NotFoundError), ValueError (InvalidArgumentError, CorruptError),
    OSError (IoError), WorkerLostError, and KeyboardInterrupt on Ctrl-C once the workers are
    stopped.
    """
    return _reduce(source, op, axis, ddof, n_jobs, backend, max_nbytes, bins, range, q, nodata,
                   mask, select, dtype, shape, offset, order, cache, progress, stacklevel=3)


def _reduce(source, op, axis, ddof, n_jobs, backend, max_nbytes, bins, range, q, nodata, mask,
            select, dtype, shape, offset, order, cache, progress, stacklevel, pool=None):
    # Every argument checked before anything is opened or copied.
    if isinstance(op, str):
        ops = [o.strip() for o in op.split(",")]
        several = len(ops) > 1
    else:
        ops = [str(o).strip() for o in op]
        several = True
    if not ops or not all(ops):
        raise InvalidArgumentError(f"op: {op!r} names no op (e.g. \"mean\" or [\"mean\", \"std\"])")
    if axis is None:
        axes = None
    elif isinstance(axis, (int, np.integer)) and not isinstance(axis, (bool, np.bool_)):
        axes = [_integer("axis", axis)]
    elif isinstance(axis, (tuple, list)):
        axes = [_integer("axis", a) for a in axis]
    else:
        raise TypeError(f"axis must be None, an int or a tuple of ints, not {type(axis).__name__}")
    ddof = _integer("ddof", ddof)
    bins = _integer("bins", bins, 1, (1 << 62))
    n_jobs = None if n_jobs is None else _integer("n_jobs", n_jobs)
    scalar_q = q is not None and np.ndim(q) == 0
    qs = [] if q is None else [float(v) for v in np.ravel(q)]
    if range is not None:
        range = (float(range[0]), float(range[1]))
    if max_nbytes is not None and not isinstance(max_nbytes, str):
        max_nbytes = str(_integer("max_nbytes", max_nbytes, 0, (1 << 62)))
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be a bool or a callable, not {type(progress).__name__}")
    select_text = _selection_text(select)
    if cache is not None and not isinstance(cache, Cache):
        cache = Cache(cache)
    on_progress, done = _progress_callback(progress)
    try:
        with _resolve(source, dtype, shape, offset, order, borrow=pool is None) as src:
            mask_src = None
            try:
                if mask is not None:
                    mask_src = (_Resolved(os.fspath(mask)) if isinstance(mask, (str, os.PathLike))
                                else _npy_in_memfd(np.asarray(mask), "mmcompute-mask",
                                                   "the mask array"))
                cache_args = None
                if cache is not None:
                    in_memory = src.fd is not None or src.memory is not None or (
                        mask_src is not None and mask_src.fd is not None)
                    cache_args = (cache.folder, cache.verify, not in_memory)
                results, warned = _call(
                    _core.reduce, src.spec, src.raw, ops, axes, ddof, n_jobs, backend,
                    max_nbytes, bins, range, qs, _option_text(nodata),
                    None if mask_src is None else mask_src.spec, select_text, cache_args,
                    on_progress, pool, src.memory, names=(src, mask_src))
            finally:
                if mask_src is not None:
                    mask_src.__exit__()
    finally:
        done()
    for message in warned:
        warnings.warn("cache: " + message, CacheWarning, stacklevel=stacklevel)
    out: Dict[str, np.ndarray] = {}
    for name, values, edges in results:
        if scalar_q and name in ("percentile", "nanpercentile"):
            values = values[0]
        out[name] = values
        if edges is not None:
            out["bin_edges"] = edges
    if several:
        return out
    values = out[ops[0]]
    if "bin_edges" in out:
        return values, out["bin_edges"]
    return values[()] if values.ndim == 0 else values


# reduce()'s keyword arguments and their defaults, for Cache.reduce.
_REDUCE_DEFAULTS = {k: v.default for k, v in inspect.signature(reduce).parameters.items()
                    if v.kind == v.KEYWORD_ONLY}


class Pool:
    """Workers kept between calls, so that a program reducing many small arrays pays for
    starting them once: ``with mmcompute.Pool(n_jobs=2) as pool: pool.reduce(path, "mean")``.

    n_jobs, backend, max_nbytes: as reduce's. A process pool forks a small server process now,
    which forks the workers; they run only the engine (never Python), receive each call's
    array as its open file descriptor (an np.memmap's or .npy's file; an in-memory array is
    copied once into an anonymous memory file, a memfd, for them) or, for zarr and chunked
    HDF5, by its name, and keep it open for the call.
    reduce() results are bitwise those of mmcompute.reduce(). Safe to share between threads.
    close() (or leaving the with block) closes it: the workers stop once the calls running on
    them (from other threads) end.
    """

    def __init__(self, n_jobs: int = -1, backend: str = "process",
                 max_nbytes: Union[str, int, None] = "1M"):
        n_jobs = None if n_jobs is None else _integer("n_jobs", n_jobs)
        if max_nbytes is not None and not isinstance(max_nbytes, str):
            max_nbytes = str(_integer("max_nbytes", max_nbytes, 0, (1 << 62)))
        self._pool = _call(_core.Pool, n_jobs, backend, max_nbytes)

    def __repr__(self) -> str:
        if self._pool.closed:
            return "Pool(closed)"
        return f"Pool(n_jobs={self._pool.n_jobs}, backend={self._pool.backend!r})"

    @property
    def n_jobs(self) -> int:
        """The pool's workers."""
        return _call(lambda: self._pool.n_jobs)

    def reduce(self, source: Source, op: Union[str, Sequence[str]] = "mean",
               axis: Union[None, int, Sequence[int]] = None, **options) -> Result:
        """reduce(source, op, axis, **options) on this pool's workers (n_jobs, backend and
        max_nbytes are the pool's)."""
        taken = {"n_jobs", "backend", "max_nbytes"} & set(options)
        if taken:
            raise TypeError(f"Pool.reduce: {sorted(taken)} are the pool's; pass them to Pool()")
        args = dict(_REDUCE_DEFAULTS, **options)
        unknown = set(args) - set(_REDUCE_DEFAULTS)
        if unknown:
            raise TypeError(f"Pool.reduce: unexpected arguments {sorted(unknown)}")
        if args["cache"] is not None and not isinstance(args["cache"], Cache):
            args["cache"] = Cache(args["cache"])
        return _reduce(source, op, axis, stacklevel=3, pool=self._pool, **args)

    def close(self) -> None:
        """Closes the pool: returns at once; calls running on it from other threads finish on
        its workers, which stop when the last of them ends. Later calls raise
        InvalidArgumentError."""
        self._pool.close()

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _progress_callback(progress):
    """(callable for the engine or None, what to call when the call ends)."""
    if not progress:
        return None, lambda: None
    if callable(progress):
        return progress, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:  # a line on stderr, rewritten in place
        import sys

        def line(done, total):
            sys.stderr.write(f"\rmmcompute: {done}/{total} tasks")
            sys.stderr.flush()

        return line, lambda: sys.stderr.write("\n")
    bar = tqdm(total=0, unit="task", desc="mmcompute")

    def update(done, total):
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return update, bar.close


def map_slices(fn: Callable[[np.ndarray], Any], source: Source, *, axis: int = 0,
               n_jobs: int = -1, backend: str = "process",
               max_nbytes: Union[str, int, None] = "1M", batch_bytes: int = 0,
               select: Union[None, str, int, slice, tuple] = None, dtype=None,
               shape: Union[None, int, Sequence[int]] = None, offset: int = 0,
               order: str = "C", progress: Union[bool, Callable[[int, int], None]] = False) -> list:
    """Calls ``fn(slice)`` on every slice of `source` along `axis`, in parallel, and returns the
    results in slice order: what ``Parallel(n_jobs)(delayed(fn)(a[i]) for i in range(len(a)))``
    gives over a memmap, without pickling the slices.

    fn: any Python callable (a lambda or a closure too: with the process backend the workers
        are forked from this process, so they have it, and everything it refers to, as it is
        now). It gets a read-only numpy array, the slice ``a[i]`` (``a[:, i]`` for axis 1, ...)
        in native byte order: a view of the file's mapping itself for axis 0 of a C-order
        memmap, .npy or raw file, or of an in-memory array's own memory (zero copy), else of a
        buffer the slice was decoded or gathered into; a view fn keeps stays valid. Changes fn
        makes to other objects stay in its worker.
    source: as reduce's (a path, np.memmap, ndarray, h5py.Dataset, zarr.Array).
    axis: the axis the slices are taken along (negatives count from the end).
    n_jobs, backend, max_nbytes: as reduce's. "process" forks workers that run fn in
        parallel; "thread" runs fn in threads (parallel only where fn releases the GIL, as
        numpy's large operations do); "serial" in this thread.
    batch_bytes: input bytes per task, consecutive slices handed to one worker at once (at
        least one slice; 0: about 8 MiB).
    select: a part of the source first, as reduce's.
    progress: as reduce's (tasks are batches of slices).

    Returns a list with one result per slice. Numbers, None, numpy scalars and numpy arrays
    travel back as their bytes (no pickling); other objects are pickled.

    An exception fn raises stops the call and is raised here, the same class with the same
    arguments when it pickles (else TaskFailedError), with the worker's traceback as its
    ``__cause__`` (RemoteTraceback): the first to reach the caller when several slices fail.
    BaseExceptions too: SystemExit from fn ends the caller unless caught, as it would in a
    loop. A result that does not pickle raises the pickler's error the same way. A worker that
    dies (killed, or out of memory) raises WorkerLostError naming it, its signal and its task.
    Ctrl-C raises KeyboardInterrupt: the process backend stops its workers at once; the serial
    backend interrupts fn itself (it runs on this thread); the thread backend stops between
    slices (Python cannot interrupt another thread).

    The workers are forked as os.fork() forks (CPython's fork protocol: no thread is inside
    the interpreter at that instant). As with os.fork() and multiprocessing's fork, a lock
    another thread holds at that instant stays held in the workers: a module that thread is
    importing cannot be imported by fn there.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    axis = _integer("axis", axis)
    n_jobs = None if n_jobs is None else _integer("n_jobs", n_jobs)
    batch_bytes = _integer("batch_bytes", batch_bytes, 0, (1 << 62))
    if max_nbytes is not None and not isinstance(max_nbytes, str):
        max_nbytes = str(_integer("max_nbytes", max_nbytes, 0, (1 << 62)))
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be a bool or a callable, not {type(progress).__name__}")
    select_text = _selection_text(select)
    on_progress, done = _progress_callback(progress)
    try:
        with _resolve(source, dtype, shape, offset, order, borrow=True) as src:
            return _call(_core.map_slices, fn, src.spec, src.raw, axis, n_jobs, backend,
                         max_nbytes, batch_bytes, select_text, on_progress, src.memory,
                         names=(src,))
    finally:
        done()


def _slice_raised(index: int, pickled: bytes, context: str, text: str) -> BaseException:
    """The exception map_slices raises for one that slice `index` raised in a worker (or its
    result's pickling, as `context` says): the same one when it pickles, with the worker's
    traceback text as its cause."""
    error: Optional[BaseException] = None
    if pickled:
        try:
            error = pickle.loads(pickled)
        except Exception:  # pickles but does not unpickle (an __init__ with other arguments)
            error = None
    if not isinstance(error, BaseException):
        last = text.strip().splitlines()[-1] if text.strip() else "an exception"
        error = TaskFailedError(f"slice {index} {context}: {last}")
    error.__cause__ = RemoteTraceback(f"slice {index} {context}:\n{text}")
    return error


class Cache:
    """A folder of stored results (joblib.Memory for reductions): ``Cache(folder).reduce(...)``
    takes reduce()'s arguments and answers a repeated call from the folder. Entries are written
    atomically and checked when read; several processes may share a folder (one computes, the
    others wait and read). verify: also key on a hash of the source's bytes (reads it once per
    call), for files changed in place without a new modification time."""

    def __init__(self, folder: Union[str, "os.PathLike[str]"], *, verify: bool = False):
        self.folder = os.fspath(folder)
        self.verify = bool(verify)

    def __repr__(self) -> str:
        return f"Cache({self.folder!r}, verify={self.verify})"

    def reduce(self, source: Source, op: Union[str, Sequence[str]] = "mean",
               axis: Union[None, int, Sequence[int]] = None, **options) -> Result:
        """reduce(source, op, axis, **options) through this cache."""
        if "cache" in options:
            raise TypeError("Cache.reduce: the cache is this one; pass no cache=")
        args = dict(_REDUCE_DEFAULTS, **options)
        unknown = set(args) - set(_REDUCE_DEFAULTS)
        if unknown:
            raise TypeError(f"Cache.reduce: unexpected arguments {sorted(unknown)}")
        args["cache"] = self
        return _reduce(source, op, axis, stacklevel=3, **args)

    def ls(self) -> list:
        """The entries, most recently used first: dicts with "key", "path", "size" (bytes),
        "last_use" (seconds since the epoch), "what" (the call) and "valid"."""
        return _call(_core.cache_list, self.folder)

    def clear(self) -> Dict[str, int]:
        """Removes every entry; returns the counts removed and kept."""
        return _call(_core.cache_clear, self.folder)

    def prune(self, max_size: Union[int, str]) -> Dict[str, int]:
        """Removes the least recently used entries until the rest take at most max_size bytes
        (an int, or "500M", "2G"); returns the counts removed and kept."""
        return _call(_core.cache_prune, self.folder, str(max_size))


def info(source: Source, *, dtype=None, shape=None, offset: int = 0,
         order: str = "C") -> Dict[str, Any]:
    """What the engine sees in `source` (any source reduce() takes): a dict with "path",
    "format" ("npy", "raw", "hdf5", "zarr"), "dtype" (numpy's descr, e.g. "<f4"), "shape",
    "order", "nbytes", "chunks" (None for a dense array), "dims" (the axis names zarr or HDF5
    record, or None) and "attributes" (a dict)."""
    with _resolve(source, dtype, shape, offset, order) as src:
        return _call(_core.info, src.spec, src.raw)


def convert(source: Source, dest: Union[str, "os.PathLike[str]"], *,
            chunks: Optional[Sequence[int]] = None, compressor: Optional[str] = None,
            level: int = 5, n_jobs: int = -1, overwrite: bool = False, zarr_format: int = 2,
            shards: Optional[Sequence[int]] = None, dtype=None, shape=None,
            offset: int = 0, order: str = "C") -> Dict[str, Any]:
    """Copies `source` into a new array at `dest`, whose name says its format: ``.npy``, a
    raw file, ``FILE.h5:/dataset`` or ``STORE.zarr``; in parallel and in bounded memory. The
    destination appears whole or not at all. compressor: None, "zlib", "zstd" or "blosc"
    (zarr; HDF5 takes "zlib"). zarr_format: 2 or 3; shards (v3): the shard shape, a multiple
    of the chunks, each shard one file. An existing destination is refused unless
    ``overwrite``. Returns {"nbytes", "chunks", "shards"}."""
    with _resolve(source, dtype, shape, offset, order) as src:
        return _call(_core.convert, src.spec, src.raw, os.fspath(dest),
                     None if chunks is None else [int(c) for c in chunks],
                     compressor or "none", int(level), int(n_jobs), bool(overwrite),
                     int(zarr_format), None if shards is None else [int(c) for c in shards])


def kernel_isa() -> str:
    """The instruction set the reduction kernels use here: "avx512", "avx2" or "portable"."""
    return _core.kernel_isa()
