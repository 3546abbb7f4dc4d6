// mmcompute._core: the engine's calls as the Python package needs them. The package
// (python/mmcompute/__init__.py) holds the public functions, their documentation and the
// turning of numpy arrays, memmaps, h5py datasets and zarr arrays into the names the engine
// opens; this file takes those names and plain options, runs the engine with the GIL released
// and hands back numpy arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mmc/attributes.hpp"
#include "mmc/cache.hpp"
#include "mmc/convert.hpp"
#include "mmc/error.hpp"
#include "mmc/interrupt.hpp"
#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "mmc/reduce.hpp"
#include "mmc/select.hpp"
#include "mmc/slices.hpp"
#include "mmc/zarr.hpp"

namespace py = pybind11;

namespace {

// numpy.memmap's arguments for a raw file: (descr, shape, offset, order).
using RawArgs = std::tuple<std::string, std::vector<std::int64_t>, std::uint64_t, std::string>;

// The engine's failures reach Python as EngineError(code, message); the package turns them into
// its exception classes (FileNotFoundError, ValueError, mmcompute.CorruptError, ...).
PyObject* g_engine_error = nullptr;

[[noreturn]] void raise_engine_error(const mmc::Error& e) {
  // SIGINT turned into Error(Cancelled): the scope raised the signal again when it ended, and
  // Python's handler has it. Raise that (KeyboardInterrupt, or what the program's handler does).
  if (e.code() == mmc::ErrorCode::Cancelled && PyErr_CheckSignals() != 0) {
    throw py::error_already_set();
  }
  PyErr_SetObject(g_engine_error, py::make_tuple(mmc::to_string(e.code()), e.what()).ptr());
  throw py::error_already_set();
}

// Runs `work` (engine calls only: no Python object) with the GIL released and SIGINT turned
// into the engine's cancellation. Engine errors become EngineError.
// `interrupts` false: Python's own SIGINT handler stays (map_slices on the serial backend, whose
// fn runs on this thread and gets KeyboardInterrupt there, as any Python code would).
template <class F>
auto run_engine(F&& work, bool interrupts = true) {
  try {
    py::gil_scoped_release release;
    std::optional<mmc::InterruptScope> scope;
    if (interrupts) scope.emplace();
    return work();
  } catch (const mmc::Error& e) {
    raise_engine_error(e);
  }
}

mmc::AnyArray open_spec(const std::string& spec, const std::optional<RawArgs>& raw) {
  if (!raw) return mmc::open_array(spec);
  mmc::RawSpec r;
  r.path = spec;
  r.dtype = mmc::DType::from_numpy_descr(std::get<0>(*raw));
  r.shape = std::get<1>(*raw);
  r.offset = std::get<2>(*raw);
  const std::string& order = std::get<3>(*raw);
  if (order != "C" && order != "F") {
    throw mmc::Error(mmc::ErrorCode::InvalidArgument,
                     "order must be 'C' or 'F', not '" + order + "'");
  }
  r.order = order == "F" ? mmc::Order::F : mmc::Order::C;
  return mmc::open_array(spec, &r);
}

// An in-memory numpy array read in place: `memory` is C- or F-contiguous (the package made it
// so), of a dtype the engine reads; `spec` is only its name in messages. The caller keeps the
// array referenced (and unchanged) until the call returns; workers forked per call see it
// as it was.
mmc::AnyArray borrow_array(const py::array& memory, const std::string& label) {
  const bool fortran = !(memory.flags() & py::array::c_style) &&
                       (memory.flags() & py::array::f_style) && memory.ndim() > 1;
  const auto descr = py::str(memory.dtype().attr("str")).cast<std::string>();
  const mmc::Shape shape(memory.shape(), memory.shape() + memory.ndim());
  const auto nbytes = static_cast<std::uint64_t>(memory.nbytes());
  const auto* data = static_cast<const std::byte*>(memory.data());
  return run_engine([&] {
    mmc::DType dtype;
    try {
      dtype = mmc::DType::from_numpy_descr(descr);
    } catch (const mmc::Error& e) {
      throw mmc::Error(e.code(), label + ": " + e.what());
    }
    mmc::ArrayMeta meta =
        mmc::ArrayMeta::contiguous(dtype, shape, fortran ? mmc::Order::F : mmc::Order::C);
    return mmc::AnyArray(
        mmc::Source(std::move(meta), mmc::MappedFile::borrow(data, nbytes, label), "memory"));
  });
}

// A copy of an engine result as a numpy array of its dtype and shape.
py::array to_numpy(const mmc::DType& dtype, const mmc::Shape& shape, const mmc::Bytes& bytes) {
  const std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  py::array out(py::dtype(dtype.numpy_descr()), dims);
  if (!bytes.empty()) std::memcpy(out.mutable_data(), bytes.data(), bytes.size());
  return out;
}

// A cache folder as the package names one: (folder, verify, cacheable). `cacheable` is false
// when the source or the mask is an in-memory array's memfd copy, whose identity is new at every
// call: its entries would never hit.
using CacheArgs = std::tuple<std::string, bool, bool>;

// Calls the Python progress callable `fn(done, total)` from the engine (the caller's thread,
// GIL released). A Python error it raises stops the call: kept in `error`, the engine gets
// Error(Cancelled), and reduce() raises the Python error.
struct ProgressBridge {
  py::object fn;
  std::optional<py::error_already_set> error;

  mmc::ProgressCallback callback() {
    return [this](const mmc::Progress& p) {
      const py::gil_scoped_acquire gil;
      try {
        fn(p.done, p.total);
      } catch (py::error_already_set& e) {
        error = std::move(e);
        throw mmc::Error(mmc::ErrorCode::Cancelled, "the progress callback raised");
      }
    };
  }
};

// mmcompute.Pool: a warm mmc::Pool. Each call holds the pool it started on, so close() from
// another thread ends the workers only when the calls on them are done.
class WarmPool {
 public:
  WarmPool(const std::optional<int>& n_jobs, const std::optional<std::string>& backend,
           const std::optional<std::string>& max_nbytes) {
    pool_ = run_engine([&] {
      mmc::PoolOptions o;
      o.n_jobs = n_jobs;
      if (backend) o.backend = mmc::parse_backend(*backend);
      if (max_nbytes) o.max_nbytes = mmc::parse_max_nbytes(*max_nbytes);
      return std::make_shared<mmc::Pool>(o);
    });
  }
  // The pool, or InvalidArgument once closed (under the GIL).
  std::shared_ptr<mmc::Pool> get() const {
    if (!pool_) throw mmc::Error(mmc::ErrorCode::InvalidArgument, "the pool is closed");
    return pool_;
  }
  void close() {
    std::shared_ptr<mmc::Pool> last = std::move(pool_);
    const py::gil_scoped_release release;  // stopping the workers waits for them
    last.reset();
  }
  bool closed() const { return !pool_; }
  int n_jobs() const { return get()->n_jobs(); }
  std::string backend() const { return mmc::to_string(get()->backend()); }

 private:
  std::shared_ptr<mmc::Pool> pool_;
};

py::tuple reduce(const std::string& spec, const std::optional<RawArgs>& raw,
                 const std::vector<std::string>& ops, const std::optional<std::vector<int>>& axes,
                 int ddof, const std::optional<int>& n_jobs,
                 const std::optional<std::string>& backend,
                 const std::optional<std::string>& max_nbytes, std::int64_t bins,
                 const std::optional<std::pair<double, double>>& range,
                 const std::vector<double>& q, const std::optional<std::string>& nodata,
                 const std::optional<std::string>& mask, const std::optional<std::string>& select,
                 const std::optional<CacheArgs>& cache_args, const py::object& progress,
                 const WarmPool* warm, const std::optional<py::array>& memory) {
  mmc::ReduceOptions o;
  std::shared_ptr<mmc::Pool> pool;
  if (warm != nullptr) {
    try {
      pool = warm->get();
    } catch (const mmc::Error& e) {
      raise_engine_error(e);
    }
  }
  ProgressBridge bridge{progress, std::nullopt};
  if (!progress.is_none()) o.progress = bridge.callback();
  std::vector<std::string> warnings;
  std::vector<mmc::ReduceResult> results;
  std::optional<mmc::AnyArray> borrowed;
  if (memory) borrowed = borrow_array(*memory, spec);
  try {
    results = run_engine([&] {
      for (const std::string& op : ops) o.ops.push_back(mmc::parse_reduce_op(op));
      if (o.ops.empty()) throw mmc::Error(mmc::ErrorCode::InvalidArgument, "no op asked for");
      o.axes_given = true;  // none: every axis, as numpy's axis=None (set once the array is open)
      if (axes) o.axes = *axes;
      o.ddof = ddof;
      o.bins = bins;
      if (range) {
        o.range_given = true;
        o.range_lo = range->first;
        o.range_hi = range->second;
      }
      o.q = q;
      if (nodata) o.nodata = mmc::parse_nodata(*nodata);
      o.pool.n_jobs = n_jobs;
      if (backend) o.pool.backend = mmc::parse_backend(*backend);
      if (max_nbytes) o.pool.max_nbytes = mmc::parse_max_nbytes(*max_nbytes);
      if (mask) o.mask = std::make_shared<const mmc::Source>(mmc::open_npy(*mask));
      mmc::AnyArray array = borrowed ? *borrowed : open_spec(spec, raw);
      if (select) array = mmc::select(array, mmc::parse_selection(*select));
      if (!axes) {
        for (int a = 0; a < array.meta().ndim(); ++a) o.axes.push_back(a);
      }
      if (cache_args) {
        // As the CLI: what the cache cannot key yet is computed, with a warning.
        const auto& [folder, verify, cacheable] = *cache_args;
        if (!cacheable) {
          warnings.push_back(
              "in-memory arrays are not cached (save the array to a file, or pass "
              "an np.memmap); computing");
        } else if (!array.reversed_axes().empty()) {
          warnings.push_back(
              "results of selections with a negative step are not cached yet; "
              "computing");
        } else if (array.dense() == nullptr) {
          warnings.push_back("results of chunked sources (" + array.kind() +
                             ") are not cached yet; computing");
        } else {
          mmc::CacheOptions co;
          co.folder = folder;
          co.verify = verify;
          co.on_warning = [&warnings](const std::string& m) { warnings.push_back(m); };
          return mmc::Cache(co).reduce_each(*array.dense(), o);
        }
      }
      return pool ? mmc::reduce_each(array, o, *pool) : mmc::reduce_each(array, o);
    });
  } catch (py::error_already_set&) {
    if (bridge.error) throw std::move(*bridge.error);
    throw;
  }
  // One (name, values, bin_edges or None) per op, in the order asked.
  py::list out;
  for (std::size_t k = 0; k < results.size(); ++k) {
    const mmc::ReduceResult& r = results[k];
    py::object edges = py::none();
    if (!r.edges.empty()) {
      edges =
          to_numpy(r.edges_dtype,
                   {static_cast<std::int64_t>(r.edges.size() / r.edges_dtype.itemsize())}, r.edges);
    }
    out.append(py::make_tuple(mmc::to_string(o.ops[k]), to_numpy(r.dtype, r.shape, r.data), edges));
  }
  // The cache's warnings, for the package to raise as CacheWarning at the caller's line.
  return py::make_tuple(out, warnings);
}

// map_slices: a Python function over every slice, in the engine's workers.
//
// Each task's result is a run of records, one per slice: a tag byte, the payload's length (8
// bytes) and the payload. Numbers and numpy arrays travel as their bytes; anything else
// pickled; a Python exception as the last record of its task, which fails the call as soon as
// the caller sees it.
enum Tag : char {
  kNone = 'N',
  kBool = 'B',
  kInt = 'I',      // int64
  kFloat = 'F',    // float64
  kScalar = 'S',   // numpy scalar: descr length (4), descr, its bytes
  kArray = 'A',    // ndarray: descr length (4), descr, ndim (4), shape (8 each), C-order bytes
  kPickled = 'P',  // pickle.dumps
  kRaised = 'E',   // slice (8), pickled exception length (8, 0 if it does not pickle), it,
                   // context length (8), context, the traceback's text
};

void put(mmc::Bytes& out, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::byte*>(p);
  out.insert(out.end(), b, b + n);
}

// Appends one record: tag, then the payload length and `parts` back to back.
void put_record(mmc::Bytes& out, Tag tag,
                std::initializer_list<std::pair<const void*, std::size_t>> parts) {
  std::uint64_t length = 0;
  for (const auto& [p, n] : parts) length += n;
  out.push_back(static_cast<std::byte>(tag));
  put(out, &length, sizeof length);
  for (const auto& [p, n] : parts) put(out, p, n);
}

// numpy dtypes that travel as bytes: no Python objects inside, no fields (whose .str loses
// them).
bool plain_dtype(const py::dtype& dt) {
  return !dt.attr("hasobject").cast<bool>() && dt.attr("fields").is_none();
}

void encode_result(const py::handle r, mmc::Bytes& out) {
  if (r.is_none()) return put_record(out, kNone, {});
  if (PyBool_Check(r.ptr())) {
    const char b = r.ptr() == Py_True ? 1 : 0;
    return put_record(out, kBool, {{&b, 1}});
  }
  if (PyFloat_CheckExact(r.ptr())) {
    const double v = PyFloat_AS_DOUBLE(r.ptr());
    return put_record(out, kFloat, {{&v, sizeof v}});
  }
  if (PyLong_CheckExact(r.ptr())) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(r.ptr(), &overflow);
    if (overflow == 0) {
      const std::int64_t w = v;
      return put_record(out, kInt, {{&w, sizeof w}});
    }
  }
  const py::module_ np = py::module_::import("numpy");
  if (Py_TYPE(r.ptr()) == reinterpret_cast<PyTypeObject*>(np.attr("ndarray").ptr())) {
    const auto a = py::reinterpret_borrow<py::array>(r);
    if (plain_dtype(a.dtype())) {
      // (Not np.ascontiguousarray, which makes a 0-d array 1-d.)
      const py::array c = (a.flags() & py::array::c_style) ? a : py::array(a.attr("copy")("C"));
      const auto descr = py::str(a.dtype().attr("str")).cast<std::string>();
      const auto descr_n = static_cast<std::uint32_t>(descr.size());
      const auto ndim = static_cast<std::uint32_t>(c.ndim());
      std::vector<std::int64_t> shape(c.shape(), c.shape() + c.ndim());
      return put_record(out, kArray,
                        {{&descr_n, 4},
                         {descr.data(), descr.size()},
                         {&ndim, 4},
                         {shape.data(), shape.size() * 8},
                         {c.data(), static_cast<std::size_t>(c.nbytes())}});
    }
  } else if (py::isinstance(r, np.attr("generic"))) {
    const py::dtype dt = r.attr("dtype");
    if (plain_dtype(dt)) {
      const auto descr = py::str(dt.attr("str")).cast<std::string>();
      const auto descr_n = static_cast<std::uint32_t>(descr.size());
      const py::bytes raw = r.attr("tobytes")();
      const std::string_view bytes = raw;
      return put_record(
          out, kScalar,
          {{&descr_n, 4}, {descr.data(), descr.size()}, {bytes.data(), bytes.size()}});
    }
  }
  const py::bytes pickled = py::module_::import("pickle").attr("dumps")(
      r, py::module_::import("pickle").attr("HIGHEST_PROTOCOL"));
  const std::string_view bytes = pickled;
  put_record(out, kPickled, {{bytes.data(), bytes.size()}});
}

// The record of the Python exception being handled, raised by slice `index`; `context` says
// where ("raised in a worker", or that its result could not be sent back).
void encode_raised(py::error_already_set& e, std::int64_t index, const std::string& context,
                   mmc::Bytes& out) {
  std::string pickled;
  try {
    pickled = py::bytes(py::module_::import("pickle").attr("dumps")(e.value()));
  } catch (py::error_already_set&) {  // not picklable: the parent raises TaskFailedError
  }
  std::string text;
  try {
    const py::object trace =
        e.trace() ? py::reinterpret_borrow<py::object>(e.trace()) : py::object(py::none());
    const py::list lines =
        py::module_::import("traceback").attr("format_exception")(e.type(), e.value(), trace);
    for (const py::handle line : lines) text += line.cast<std::string>();
  } catch (py::error_already_set&) {
    text = e.what();
  }
  const std::uint64_t n = pickled.size();
  const std::uint64_t c = context.size();
  put_record(out, kRaised,
             {{&index, 8},
              {&n, 8},
              {pickled.data(), pickled.size()},
              {&c, 8},
              {context.data(), context.size()},
              {text.data(), text.size()}});
}

// One record read back.
struct Record {
  Tag tag;
  const std::byte* data;
  std::size_t size;
};

// Walks a task's records; false at the end. Throws Error(Internal) for a truncated record.
bool next_record(mmc::ByteView bytes, std::size_t* at, Record* record) {
  if (*at >= bytes.size) return false;
  std::uint64_t length = 0;
  if (bytes.size - *at < 1 + sizeof length) {
    throw mmc::Error(mmc::ErrorCode::Internal, "map_slices: a truncated result");
  }
  record->tag = static_cast<Tag>(bytes.data[*at]);
  std::memcpy(&length, bytes.data + *at + 1, sizeof length);
  *at += 1 + sizeof length;
  if (length > bytes.size - *at) {
    throw mmc::Error(mmc::ErrorCode::Internal, "map_slices: a truncated result");
  }
  record->data = bytes.data + *at;
  record->size = static_cast<std::size_t>(length);
  *at += record->size;
  return true;
}

// A slice's failure on its way to the caller: the exception record, thrown from the engine's
// result callback so that the call stops at once.
struct SliceRaised {
  mmc::Bytes record;
};

py::object decode_result(const Record& r) {
  const auto take = [&r](std::size_t at, void* to, std::size_t n) {
    if (at + n > r.size) throw mmc::Error(mmc::ErrorCode::Internal, "map_slices: a bad record");
    std::memcpy(to, r.data + at, n);
  };
  const auto descr_at = [&](std::size_t* at) {
    std::uint32_t n = 0;
    take(*at, &n, 4);
    if (*at + 4 + n > r.size)
      throw mmc::Error(mmc::ErrorCode::Internal, "map_slices: a bad record");
    std::string descr(reinterpret_cast<const char*>(r.data) + *at + 4, n);
    *at += 4 + n;
    return descr;
  };
  switch (r.tag) {
    case kNone:
      return py::none();
    case kBool: {
      char b = 0;
      take(0, &b, 1);
      return py::bool_(b != 0);
    }
    case kInt: {
      std::int64_t v = 0;
      take(0, &v, 8);
      return py::int_(v);
    }
    case kFloat: {
      double v = 0;
      take(0, &v, 8);
      return py::float_(v);
    }
    case kScalar: {
      std::size_t at = 0;
      const py::dtype dt = py::dtype(descr_at(&at));
      const py::bytes raw(reinterpret_cast<const char*>(r.data) + at, r.size - at);
      return py::module_::import("numpy").attr("frombuffer")(raw, dt)[py::int_(0)];
    }
    case kArray: {
      std::size_t at = 0;
      const py::dtype dt = py::dtype(descr_at(&at));
      std::uint32_t ndim = 0;
      take(at, &ndim, 4);
      at += 4;
      std::vector<py::ssize_t> shape(ndim);
      for (std::uint32_t i = 0; i < ndim; ++i, at += 8) {
        std::int64_t e = 0;
        take(at, &e, 8);
        shape[i] = static_cast<py::ssize_t>(e);
      }
      // numpy.empty, not py::array(dt, shape): pybind11 makes an empty shape (1,), not ().
      const py::array a =
          py::module_::import("numpy").attr("empty")(py::tuple(py::cast(shape)), dt);
      if (static_cast<std::size_t>(a.nbytes()) != r.size - at) {
        throw mmc::Error(mmc::ErrorCode::Internal, "map_slices: a bad array record");
      }
      if (a.nbytes() > 0) std::memcpy(const_cast<void*>(a.data()), r.data + at, r.size - at);
      return a;
    }
    case kPickled:
      return py::module_::import("pickle").attr("loads")(
          py::bytes(reinterpret_cast<const char*>(r.data), r.size));
    default:
      throw mmc::Error(mmc::ErrorCode::Internal, "map_slices: an unknown result record");
  }
}

// CPython's own fork protocol around each worker's fork, as os.fork() runs it: the GIL held
// across fork() (no other thread can be inside the interpreter then), the import lock and the
// os.register_at_fork callbacks, and in the child the interpreter's threads and locks
// reinitialized with this thread as the main one. The GIL is let go after, in both processes.
mmc::ForkHooks python_fork_hooks() {
  const auto state = std::make_shared<PyGILState_STATE>();
  mmc::ForkHooks hooks;
  hooks.prepare = [state] {
    *state = PyGILState_Ensure();
    PyOS_BeforeFork();
  };
  hooks.parent = [state] {
    PyOS_AfterFork_Parent();
    PyGILState_Release(*state);
  };
  hooks.child = [state] {
    PyOS_AfterFork_Child();
    PyGILState_Release(*state);
  };
  return hooks;
}

// Writes out what the task's function printed (Python's buffers, not C stdio's): a worker
// process ends with _exit, which would drop them.
void flush_python_output() {
  const py::module_ sys = py::module_::import("sys");
  for (const char* name : {"stdout", "stderr"}) {
    const py::object stream = sys.attr(name);
    if (!stream.is_none() && py::hasattr(stream, "flush")) {
      try {
        stream.attr("flush")();
      } catch (py::error_already_set&) {
      }
    }
  }
}

// What a task's slice views keep alive (their numpy base, a capsule).
struct SliceOwner {
  mmc::AnyArray array;
  py::object memory;            // the lent array, when the source is one
  std::vector<std::byte> copy;  // the task's slices, when they were not read in place
};

// True when [slices, slices + bytes) lies in the array's own bytes (a mapping or lent memory),
// not in a task buffer.
bool reads_in_place(const mmc::AnyArray& array, const std::byte* slices, std::size_t bytes) {
  const mmc::Source* dense = array.dense();
  if (dense == nullptr || bytes == 0) return bytes == 0;
  const auto lo = reinterpret_cast<std::uintptr_t>(dense->data());
  const auto at = reinterpret_cast<std::uintptr_t>(slices);
  return at >= lo && at - lo <= dense->mapping().size() &&
         bytes <= dense->mapping().size() - (at - lo);
}

py::list map_slices(const py::object& fn, const std::string& spec,
                    const std::optional<RawArgs>& raw, int axis, const std::optional<int>& n_jobs,
                    const std::optional<std::string>& backend,
                    const std::optional<std::string>& max_nbytes, std::int64_t task_bytes,
                    const std::optional<std::string>& select, const py::object& progress,
                    const std::optional<py::array>& memory) {
  ProgressBridge bridge{progress, std::nullopt};
  std::optional<mmc::AnyArray> borrowed;
  if (memory) borrowed = borrow_array(*memory, spec);
  std::map<std::int64_t, mmc::Bytes> results;  // each task's records, by its first slice
  // Set once a slice raised (in this process): later tasks return at once, whatever the
  // backend ran ahead of the caller seeing the failure (a serial call, or a worker's queue).
  std::atomic<bool> raised{false};
  const bool serial = run_engine([&] {
    mmc::PoolOptions p;
    p.n_jobs = n_jobs;
    if (backend) p.backend = mmc::parse_backend(*backend);
    return mmc::resolve(p).backend == mmc::Backend::Serial;
  });
  try {
    run_engine(
        [&] {
          mmc::AnyArray array = borrowed ? *borrowed : open_spec(spec, raw);
          if (select) array = mmc::select(array, mmc::parse_selection(*select));
          mmc::SliceOptions o;
          o.axis = axis;
          o.task_bytes = task_bytes;
          o.pool.n_jobs = n_jobs;
          if (backend) o.pool.backend = mmc::parse_backend(*backend);
          if (max_nbytes) o.pool.max_nbytes = mmc::parse_max_nbytes(*max_nbytes);
          o.pool.fork_hooks = python_fork_hooks();
          if (!progress.is_none()) o.progress = bridge.callback();
          const mmc::ArrayMeta& meta = array.meta();
          const mmc::Shape shape = mmc::detail::slice_shape(meta, axis).first;
          const std::vector<py::ssize_t> dims(shape.begin(), shape.end());
          const std::string descr = meta.dtype.native().numpy_descr();
          std::size_t slice_bytes = meta.dtype.itemsize();
          for (const std::int64_t e : shape) slice_bytes *= static_cast<std::size_t>(e);
          mmc::detail::run_slice_tasks(
              array, o,
              [&](std::int64_t first, std::int64_t count, const std::byte* slices,
                  mmc::Bytes& result) {
                const py::gil_scoped_acquire gil;
                if (raised.load()) return;
                const py::dtype dt(descr);
                // What the views' base keeps alive, so that a view fn keeps stays valid: the array
                // (its mapping) and the lent memory for slices read in place, else a copy of the
                // task's buffer (which the next task reuses).
                const std::size_t bytes = static_cast<std::size_t>(count) * slice_bytes;
                auto* owner =
                    new SliceOwner{array, memory ? py::object(*memory) : py::object(), {}};
                const py::capsule keep(owner, [](void* p) { delete static_cast<SliceOwner*>(p); });
                const std::byte* at = slices;
                if (!reads_in_place(array, slices, bytes)) {
                  owner->copy.assign(slices, slices + bytes);
                  at = owner->copy.data();
                }
                if (bytes == 0) at = reinterpret_cast<const std::byte*>(owner);  // never read
                for (std::int64_t k = 0; k < count; ++k) {
                  // The thread backend's workers stop between slices once Ctrl-C came.
                  if (mmc::interrupted())
                    throw mmc::Error(mmc::ErrorCode::Cancelled, "interrupted");
                  py::object r;
                  try {
                    py::array view(dt, dims, std::vector<py::ssize_t>(),
                                   at + static_cast<std::size_t>(k) * slice_bytes, keep);
                    view.attr("setflags")(py::arg("write") = false);
                    r = fn(dims.empty() ? view.attr("reshape")(py::tuple()) : py::object(view));
                  } catch (py::error_already_set& e) {
                    encode_raised(e, first + k, "raised in a worker", result);
                    raised.store(true);
                    break;
                  }
                  try {
                    encode_result(r, result);
                  } catch (py::error_already_set& e) {
                    encode_raised(
                        e, first + k,
                        "returned a " +
                            py::str(py::type::of(r).attr("__name__")).cast<std::string>() +
                            ", which cannot be sent back (it does not pickle)",
                        result);
                    raised.store(true);
                    break;
                  }
                }
                flush_python_output();
              },
              [&](std::int64_t first, std::int64_t, mmc::ByteView r) {
                // Records are scanned without the GIL: only tags and lengths are read.
                Record record{};
                std::size_t at = 0;
                while (next_record(r, &at, &record)) {
                  if (record.tag == kRaised) {
                    throw SliceRaised{mmc::Bytes(record.data, record.data + record.size)};
                  }
                }
                results[first].assign(r.data, r.data + r.size);
              });
        },
        /*interrupts=*/!serial);
  } catch (py::error_already_set&) {
    if (bridge.error) throw std::move(*bridge.error);
    throw;
  } catch (const SliceRaised& raised) {
    const std::byte* p = raised.record.data();
    const std::size_t size = raised.record.size();
    std::int64_t index = 0;
    std::uint64_t n = 0, c = 0;
    if (size >= 16) {
      std::memcpy(&index, p, 8);
      std::memcpy(&n, p + 8, 8);
    }
    if (size < 24 || n > size - 24) throw std::runtime_error("map_slices: a bad exception record");
    std::memcpy(&c, p + 16 + n, 8);
    if (c > size - 24 - n) throw std::runtime_error("map_slices: a bad exception record");
    const auto* chars = reinterpret_cast<const char*>(p);
    const py::bytes pickled(chars + 16, n);
    const std::string context(chars + 24 + n, c);
    const std::string text(chars + 24 + n + c, size - 24 - n - c);
    // The package rebuilds the worker's exception (or a TaskFailedError) with its traceback.
    const py::object error =
        py::module_::import("mmcompute").attr("_slice_raised")(index, pickled, context, text);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    throw py::error_already_set();
  }
  py::list out;
  for (const auto& [first, bytes] : results) {
    Record record{};
    std::size_t at = 0;
    while (next_record({bytes.data(), bytes.size()}, &at, &record))
      out.append(decode_result(record));
  }
  return out;
}

py::dict info(const std::string& spec, const std::optional<RawArgs>& raw) {
  struct Described {
    mmc::ArrayMeta meta;
    std::string kind, name;
    mmc::Shape chunks;
    mmc::ArrayAttributes attributes;
  };
  const Described d = run_engine([&] {
    const mmc::AnyArray array = open_spec(spec, raw);
    Described out{array.meta(), array.kind(), array.name(), {}, mmc::read_attributes(array)};
    if (array.chunked() != nullptr) out.chunks = array.chunked()->chunk_shape();
    return out;
  });
  py::dict out;
  out["path"] = d.name;
  out["format"] = d.kind;
  out["dtype"] = d.meta.dtype.numpy_descr();
  out["shape"] = py::tuple(py::cast(d.meta.shape));
  out["order"] = d.meta.order == mmc::Order::F ? "F" : "C";
  out["nbytes"] = d.meta.nbytes();
  out["chunks"] =
      d.chunks.empty() ? py::object(py::none()) : py::object(py::tuple(py::cast(d.chunks)));
  out["dims"] = d.attributes.dims.empty() ? py::object(py::none())
                                          : py::object(py::tuple(py::cast(d.attributes.dims)));
  out["attributes"] = py::module_::import("json").attr("loads")(d.attributes.json);
  return out;
}

py::dict convert(const std::string& spec, const std::optional<RawArgs>& raw,
                 const std::string& dest, const std::optional<std::vector<std::int64_t>>& chunks,
                 const std::string& compressor, int level, const std::optional<int>& n_jobs,
                 bool overwrite, int zarr_format,
                 const std::optional<std::vector<std::int64_t>>& shards) {
  const mmc::ConvertStats stats = run_engine([&] {
    mmc::ConvertOptions o;
    if (chunks) o.chunks = *chunks;
    if (shards) o.shards = *shards;
    o.zarr_format = zarr_format;
    o.compressor = mmc::parse_compressor(compressor);
    o.level = level;
    o.overwrite = overwrite;
    o.pool.n_jobs = n_jobs;
    return mmc::convert(open_spec(spec, raw), dest, o);
  });
  py::dict out;
  out["nbytes"] = stats.logical_bytes;
  out["chunks"] =
      stats.chunks.empty() ? py::object(py::none()) : py::object(py::tuple(py::cast(stats.chunks)));
  out["shards"] =
      stats.shards.empty() ? py::object(py::none()) : py::object(py::tuple(py::cast(stats.shards)));
  return out;
}

mmc::Cache open_cache(const std::string& folder) {
  mmc::CacheOptions o;
  o.folder = folder;
  return mmc::Cache(o);
}

py::dict removal_dict(const mmc::CacheRemoval& r) {
  py::dict out;
  out["removed_entries"] = r.removed_entries;
  out["removed_bytes"] = r.removed_bytes;
  out["kept_entries"] = r.kept_entries;
  out["kept_bytes"] = r.kept_bytes;
  return out;
}

py::list cache_list(const std::string& folder) {
  const std::vector<mmc::CacheEntryInfo> entries =
      run_engine([&] { return open_cache(folder).list(); });
  py::list out;
  for (const mmc::CacheEntryInfo& e : entries) {
    py::dict d;
    d["key"] = e.key;
    d["path"] = e.path;
    d["size"] = e.size;
    d["last_use"] = static_cast<double>(e.last_use_ns) * 1e-9;
    d["what"] = e.what;
    d["valid"] = e.valid;
    out.append(d);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "mmcompute's engine (use the mmcompute package, not this module)";
  static py::exception<mmc::Error> engine_error(m, "EngineError");
  g_engine_error = engine_error.ptr();
  m.def("reduce", &reduce);
  py::class_<WarmPool>(m, "Pool")
      .def(py::init<const std::optional<int>&, const std::optional<std::string>&,
                    const std::optional<std::string>&>())
      .def("close", &WarmPool::close)
      .def_property_readonly("closed", &WarmPool::closed)
      .def_property_readonly("n_jobs",
                             [](const WarmPool& p) {
                               try {
                                 return p.n_jobs();
                               } catch (const mmc::Error& e) {
                                 raise_engine_error(e);
                               }
                             })
      .def_property_readonly("backend", [](const WarmPool& p) {
        try {
          return p.backend();
        } catch (const mmc::Error& e) {
          raise_engine_error(e);
        }
      });
  m.def("map_slices", &map_slices);
  m.def("info", &info);
  m.def("convert", &convert);
  m.def("kernel_isa", [] { return std::string(mmc::kernel_isa()); });
  m.def("cache_list", &cache_list);
  m.def("cache_clear", [](const std::string& folder) {
    return removal_dict(run_engine([&] { return open_cache(folder).clear(); }));
  });
  m.def("cache_prune", [](const std::string& folder, const std::string& max_size) {
    return removal_dict(
        run_engine([&] { return open_cache(folder).prune(mmc::parse_max_nbytes(max_size)); }));
  });
}
