// mmcompute._core: the engine's calls as the Python package needs them. The package
// (python/mmcompute/__init__.py) holds the public functions, their documentation and the
// turning of numpy arrays, memmaps, h5py datasets and zarr arrays into the names the engine
// opens; this file takes those names and plain options, runs the engine with the GIL released
// and hands back numpy arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mmc/cache.hpp"
#include "mmc/convert.hpp"
#include "mmc/error.hpp"
#include "mmc/interrupt.hpp"
#include "mmc/open.hpp"
#include "mmc/reduce.hpp"
#include "mmc/select.hpp"
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
template <class F>
auto run_engine(F&& work) {
  try {
    py::gil_scoped_release release;
    const mmc::InterruptScope interrupts;
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

py::tuple reduce(const std::string& spec, const std::optional<RawArgs>& raw,
                 const std::vector<std::string>& ops, const std::optional<std::vector<int>>& axes,
                 int ddof, const std::optional<int>& n_jobs,
                 const std::optional<std::string>& backend,
                 const std::optional<std::string>& max_nbytes, std::int64_t bins,
                 const std::optional<std::pair<double, double>>& range,
                 const std::vector<double>& q, const std::optional<std::string>& nodata,
                 const std::optional<std::string>& mask, const std::optional<std::string>& select,
                 const std::optional<CacheArgs>& cache_args, const py::object& progress) {
  mmc::ReduceOptions o;
  ProgressBridge bridge{progress, std::nullopt};
  if (!progress.is_none()) o.progress = bridge.callback();
  std::vector<std::string> warnings;
  std::vector<mmc::ReduceResult> results;
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
      mmc::AnyArray array = open_spec(spec, raw);
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
      return mmc::reduce_each(array, o);
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

py::dict info(const std::string& spec, const std::optional<RawArgs>& raw) {
  struct Described {
    mmc::ArrayMeta meta;
    std::string kind, name;
    mmc::Shape chunks;
  };
  const Described d = run_engine([&] {
    const mmc::AnyArray array = open_spec(spec, raw);
    Described out{array.meta(), array.kind(), array.name(), {}};
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
  return out;
}

py::dict convert(const std::string& spec, const std::optional<RawArgs>& raw,
                 const std::string& dest, const std::optional<std::vector<std::int64_t>>& chunks,
                 const std::string& compressor, int level, const std::optional<int>& n_jobs,
                 bool overwrite) {
  const mmc::ConvertStats stats = run_engine([&] {
    mmc::ConvertOptions o;
    if (chunks) o.chunks = *chunks;
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
