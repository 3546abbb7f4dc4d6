// HDF5 datasets as sources: contiguous ones mapped in place, chunked ones read chunk by chunk
// (raw chunks fetched with H5Dread_chunk and decoded here), everything else through libhdf5.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

#include "io/codecs.hpp"
#include "io/hdf5_handles.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/source.hpp"

namespace mmc {

bool split_hdf5_spec(const std::string& spec, std::string* file, std::string* dataset) {
  const std::size_t pos = spec.find(":/");
  if (pos == std::string::npos || pos == 0) return false;
  *file = spec.substr(0, pos);
  *dataset = spec.substr(pos + 1);
  return true;
}

namespace {

using detail::Hdf5Handle;
using detail::Hdf5Kind;

// Unfiltered chunks are mapped in place only when their addresses can be listed cheaply. In
// 1.10.8 every H5Dget_chunk_info call walks the chunk index from its start, so listing n
// chunks costs O(n^2). Measured here (n chunks of 32 bytes): v1 B-tree index (h5py's default)
// 0.6 ms for 256 chunks, 11 ms for 1024, 180 ms for 4096; libver="latest" indexes are 5-20x
// slower (extensible array: 7 ms for 256, 127 ms for 1024). Reading a raw chunk with
// H5Dget_chunk_storage_size + H5Dread_chunk costs ~2 us whatever n is. 256 keeps the listing
// under ~10 ms with every index type; past it, the quadratic listing costs more than reading
// each chunk once through the library, and chunks are read (and copied) by read_chunk.
constexpr std::int64_t kMaxChunksToMap = 256;
// H5Dget_num_chunks is linear (~0.4 us a chunk here): count stored chunks up to ~25 ms.
constexpr std::int64_t kMaxChunksToCount = 65536;
// Datasets read through H5Dread (compact, external, virtual, never-written contiguous ones)
// get a synthetic C-order chunk grid of at most this many bytes per chunk, so read_box never
// needs a buffer of the whole dataset.
constexpr std::uint64_t kLibraryChunkBytes = std::uint64_t{8} << 20;

constexpr std::uint64_t kAbsent = std::numeric_limits<std::uint64_t>::max();

// ---- types and shapes ----

// A short description of an HDF5 datatype for error messages ("variable-length string").
std::string describe_type(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  const std::string bytes = std::to_string(size) + "-byte";
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return bytes + " integer";
    case H5T_FLOAT:
      return bytes + " float";
    case H5T_TIME:
      return "time";
    case H5T_STRING:
      return H5Tis_variable_str(type) > 0 ? "variable-length string"
                                          : bytes + " fixed-length string";
    case H5T_BITFIELD:
      return bytes + " bitfield";
    case H5T_OPAQUE:
      return bytes + " opaque";
    case H5T_COMPOUND:
      return "compound (" + std::to_string(H5Tget_nmembers(type)) + " fields)";
    case H5T_REFERENCE:
      return "reference";
    case H5T_ENUM:
      return "enum over " + bytes + " integers";
    case H5T_VLEN:
      return "variable-length sequence";
    case H5T_ARRAY:
      return "array";
    default:
      return "unknown";
  }
}

// True for an integer type with every bit of its bytes significant (no nbit padding).
bool plain_integer(hid_t type) {
  return H5Tget_precision(type) == 8 * H5Tget_size(type) && H5Tget_offset(type) == 0;
}

ByteOrder byte_order_of(hid_t type, const std::string& where) {
  switch (H5Tget_order(type)) {
    case H5T_ORDER_LE:
    case H5T_ORDER_NONE:
      return ByteOrder::Little;
    case H5T_ORDER_BE:
      return ByteOrder::Big;
    default:
      raise(ErrorCode::InvalidArgument,
            where + ": datatype " + describe_type(type) +
                " has a mixed (VAX) byte order; convert the dataset to little- or big-endian");
  }
}

// h5py stores numpy bools as an enum over a 1-byte integer with members FALSE=0 and TRUE=1.
bool is_h5py_bool(hid_t type) {
  Hdf5Handle base = Hdf5Handle::adopt(H5Tget_super(type), Hdf5Kind::Datatype, ErrorCode::Corrupt,
                                      "enum base type");
  if (H5Tget_class(base.get()) != H5T_INTEGER || H5Tget_size(base.get()) != 1 ||
      H5Tget_nmembers(type) != 2) {
    return false;
  }
  for (unsigned i = 0; i < 2; ++i) {
    std::int8_t value = -1;
    if (H5Tget_member_value(type, i, &value) < 0) return false;
    char* name = H5Tget_member_name(type, i);
    if (name == nullptr) return false;
    const std::string member(name);
    H5free_memory(name);
    if (member != (value == 0 ? "FALSE" : "TRUE") || (value != 0 && value != 1)) return false;
  }
  return true;
}

// The DType of a dataset's file type, in the file's byte order. Throws
// Error(InvalidArgument) naming the type for anything mmcompute does not compute on.
DType dtype_of(hid_t type, const std::string& where) {
  const std::size_t size = H5Tget_size(type);
  const auto unsupported = [&](const std::string& why) -> DType {
    raise(ErrorCode::InvalidArgument,
          where + ": datatype " + describe_type(type) + " is not supported" + why +
              "; mmcompute reads integers of 1, 2, 4, 8 bytes, IEEE floats of 4 and 8 bytes "
              "and h5py's bool");
  };
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      if (!plain_integer(type)) unsupported(" (bits of padding inside the integer)");
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      const ByteOrder order = byte_order_of(type, where);
      switch (size) {
        case 1:
          return DType(is_signed ? TypeId::I8 : TypeId::U8, order);
        case 2:
          return DType(is_signed ? TypeId::I16 : TypeId::U16, order);
        case 4:
          return DType(is_signed ? TypeId::I32 : TypeId::U32, order);
        case 8:
          return DType(is_signed ? TypeId::I64 : TypeId::U64, order);
        default:
          return unsupported("");
      }
    }
    case H5T_FLOAT: {
      if (size != 4 && size != 8) return unsupported("");
      // IEEE 754 layout: sign bit on top, then the exponent, then the mantissa.
      std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize);
      const bool ieee = size == 4 ? (spos == 31 && epos == 23 && esize == 8 && msize == 23)
                                  : (spos == 63 && epos == 52 && esize == 11 && msize == 52);
      if (!ieee || mpos != 0 || H5Tget_offset(type) != 0 || H5Tget_norm(type) != H5T_NORM_IMPLIED ||
          H5Tget_ebias(type) != (size == 4 ? 127u : 1023u)) {
        return unsupported(" (not an IEEE 754 layout)");
      }
      return DType(size == 4 ? TypeId::F32 : TypeId::F64, byte_order_of(type, where));
    }
    case H5T_ENUM:
      if (is_h5py_bool(type)) return DType(TypeId::Bool);
      return unsupported(" (only h5py's bool enum FALSE=0/TRUE=1 is read)");
    default:
      return unsupported("");
  }
}

Shape shape_of(hid_t space, const std::string& where) {
  switch (H5Sget_simple_extent_type(space)) {
    case H5S_SCALAR:
      return {};
    case H5S_SIMPLE:
      break;
    case H5S_NULL:
      raise(ErrorCode::InvalidArgument,
            where + ": the dataset has a null dataspace (no elements, not even a scalar)");
    default:
      raise(ErrorCode::Corrupt,
            where + ": cannot read the dataspace: " + detail::hdf5_error_detail());
  }
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > H5S_MAX_RANK) {
    raise(ErrorCode::Corrupt, where + ": cannot read the dataspace's rank");
  }
  hsize_t dims[H5S_MAX_RANK];
  H5Sget_simple_extent_dims(space, dims, nullptr);
  Shape shape(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) {
    if (dims[i] > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max())) {
      raise(ErrorCode::InvalidArgument, where + ": extent " + std::to_string(dims[i]) +
                                            " on axis " + std::to_string(i) + " is too large");
    }
    shape[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(dims[i]);
  }
  return shape;
}

// One element of the dataset's fill value in the file's byte order (zeros when undefined).
std::vector<std::byte> fill_value_of(hid_t dcpl, hid_t type, std::size_t itemsize,
                                     const std::string& where) {
  std::vector<std::byte> fill(itemsize, std::byte{0});
  H5D_fill_value_t status = H5D_FILL_VALUE_UNDEFINED;
  if (H5Pfill_value_defined(dcpl, &status) < 0) {
    raise(ErrorCode::Corrupt,
          where + ": cannot read the fill value: " + detail::hdf5_error_detail());
  }
  // Passing the file type as the memory type returns the bytes as stored (no conversion).
  if (status == H5D_FILL_VALUE_USER_DEFINED && H5Pget_fill_value(dcpl, type, fill.data()) < 0) {
    raise(ErrorCode::Corrupt,
          where + ": cannot read the fill value: " + detail::hdf5_error_detail());
  }
  return fill;
}

// ---- files and paths ----

// Checks before H5Fopen, for errors in the user's terms rather than libhdf5's.
void check_file(const std::string& file) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      raise(ErrorCode::NotFound, file + ": no such file (expected an HDF5 file)");
    }
    raise_errno(file + ": cannot stat");
  }
  if (S_ISDIR(st.st_mode)) {
    raise(ErrorCode::InvalidArgument, file + ": is a folder, not an HDF5 file");
  }
  if (::access(file.c_str(), R_OK) != 0) raise_errno(file + ": cannot read");
  const htri_t is_hdf5 = H5Fis_hdf5(file.c_str());
  if (is_hdf5 == 0) {
    raise(ErrorCode::Corrupt, file +
                                  ": not an HDF5 file (no HDF5 signature at offset 0, 512, "
                                  "1024, ...); check the path");
  }
  if (is_hdf5 < 0) {
    raise(ErrorCode::Corrupt,
          file + ": cannot check for an HDF5 signature: " + detail::hdf5_error_detail());
  }
}

Hdf5Handle open_file(const std::string& file, ErrorCode code) {
  return Hdf5Handle::adopt(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), Hdf5Kind::File, code,
                           file + ": cannot open as an HDF5 file (damaged or truncated?)");
}

// Up to five member names of a group, for the message telling the user what to name instead.
std::string some_members(hid_t file, const std::string& group) {
  H5G_info_t info;
  if (H5Gget_info_by_name(file, group.c_str(), &info, H5P_DEFAULT) < 0) {
    detail::hdf5_error_detail();
    return "";
  }
  if (info.nlinks == 0) return " (it is empty)";
  std::string list;
  for (hsize_t i = 0; i < std::min<hsize_t>(info.nlinks, 5); ++i) {
    char name[256] = {};
    if (H5Lget_name_by_idx(file, group.c_str(), H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                           H5P_DEFAULT) < 0) {
      detail::hdf5_error_detail();
      break;
    }
    list += (list.empty() ? "" : ", ") + std::string(name);
  }
  if (info.nlinks > 5) list += ", ...";
  return " (it holds " + list + ")";
}

// Walks `path` ("/a/b/c") component by component so a missing dataset is reported as the first
// missing name (H5Lexists fails, rather than answering, when a parent is missing). Throws
// Error(NotFound) for a missing or dangling name, Error(InvalidArgument) when the path names a
// group or a named datatype.
void check_path(hid_t file, const std::string& file_name, const std::string& path) {
  const std::string where = file_name + ":" + path;
  if (path == "/") {
    raise(ErrorCode::InvalidArgument,
          where + " is the root group, not a dataset; name a dataset" + some_members(file, "/"));
  }
  std::size_t begin = 1;
  while (begin <= path.size()) {
    std::size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    const std::string prefix = path.substr(0, end);
    const std::string parent = begin == 1 ? "/" : path.substr(0, begin - 1);
    if (end == begin) {
      raise(ErrorCode::InvalidArgument,
            where + ": the dataset path has an empty name after '" + parent + "'");
    }
    const htri_t link = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (link < 0) {
      raise(ErrorCode::Corrupt,
            where + ": cannot look up '" + prefix + "': " + detail::hdf5_error_detail());
    }
    if (link == 0) {
      raise(ErrorCode::NotFound, file_name + ": no dataset '" + path + "': group '" + parent +
                                     "' has no member '" + path.substr(begin, end - begin) + "'" +
                                     some_members(file, parent));
    }
    const htri_t object = H5Oexists_by_name(file, prefix.c_str(), H5P_DEFAULT);
    if (object <= 0) {
      const std::string why = object < 0 ? detail::hdf5_error_detail() : "nothing";
      raise(ErrorCode::NotFound, file_name + ": no dataset '" + path + "': the link '" + prefix +
                                     "' leads to " + why + " (dangling soft or external link)");
    }
    H5O_info_t info;
    if (H5Oget_info_by_name2(file, prefix.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
      raise(ErrorCode::Corrupt,
            where + ": cannot read object '" + prefix + "': " + detail::hdf5_error_detail());
    }
    const bool last = end == path.size();
    if (!last && info.type != H5O_TYPE_GROUP) {
      raise(ErrorCode::NotFound,
            file_name + ": no dataset '" + path + "': '" + prefix + "' is not a group");
    }
    if (last && info.type == H5O_TYPE_GROUP) {
      raise(ErrorCode::InvalidArgument,
            where + " is a group, not a dataset; name a dataset in it" + some_members(file, path));
    }
    if (last && info.type != H5O_TYPE_DATASET) {
      raise(ErrorCode::InvalidArgument, where + " is a named datatype, not a dataset");
    }
    begin = end + 1;
  }
}

// "/a/b" from "a/b" or "/a/b" (HDF5 resolves both from the root; we name it one way).
std::string absolute_path(const std::string& file, const std::string& dataset) {
  if (dataset.empty()) {
    raise(ErrorCode::InvalidArgument, file + ": empty dataset path; give one like '/images'");
  }
  return dataset.front() == '/' ? dataset : "/" + dataset;
}

// ---- the dataset's ids, per process ----

// Opens the file and dataset lazily in each process: the parent closes its ids when open_hdf5
// returns (so workers forked later inherit no open HDF5 file), and a forked child that finds
// ids opened by another process forgets them without closing (closing could release file
// state the parent still uses) and opens its own.
class ProcessDataset {
 public:
  ProcessDataset(std::string file, std::string path, Shape shape)
      : file_(std::move(file)), path_(std::move(path)), shape_(std::move(shape)) {}
  ~ProcessDataset() {
    if (pid_ != ::getpid()) forget();
  }
  ProcessDataset(const ProcessDataset&) = delete;
  ProcessDataset& operator=(const ProcessDataset&) = delete;

  // The dataset's id in this process. Thread-safe.
  hid_t dataset() const {
    std::lock_guard<std::mutex> lock(mu_);
    const pid_t pid = ::getpid();
    if (pid_ == pid) return dataset_.get();
    forget();
    detail::hdf5_quiet();
    Hdf5Handle file = open_file(file_, ErrorCode::Io);
    Hdf5Handle dataset =
        Hdf5Handle::adopt(H5Dopen2(file.get(), path_.c_str(), H5P_DEFAULT), Hdf5Kind::Dataset,
                          ErrorCode::Io, file_ + ":" + path_ + ": cannot reopen the dataset");
    Hdf5Handle space = Hdf5Handle::adopt(H5Dget_space(dataset.get()), Hdf5Kind::Dataspace,
                                         ErrorCode::Corrupt, file_ + ":" + path_);
    if (shape_of(space.get(), file_ + ":" + path_) != shape_) {
      raise(ErrorCode::Corrupt, file_ + ":" + path_ + ": the dataset's shape changed from " +
                                    format_shape(shape_) + " since it was opened");
    }
    file_id_ = std::move(file);
    dataset_ = std::move(dataset);
    pid_ = pid;
    return dataset_.get();
  }

  // For a forked child: drop the parent's ids; the next dataset() opens afresh.
  void forget_after_fork() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (pid_ != ::getpid()) forget();
  }

 private:
  void forget() const noexcept {
    dataset_.forget();
    file_id_.forget();
    pid_ = -1;
  }

  std::string file_;
  std::string path_;
  Shape shape_;
  mutable std::mutex mu_;
  mutable pid_t pid_ = -1;
  mutable Hdf5Handle file_id_;
  mutable Hdf5Handle dataset_;
};

// ---- the HDF5 filter pipeline ----

struct FilterStep {
  H5Z_filter_t id = 0;
  std::size_t shuffle_size = 0;  // shuffle: the element size it was set up with
};

// HDF5's Fletcher-32 (H5_checksum_fletcher32): sums of big-endian 16-bit words with end-around
// carry, an odd last byte taken as the high byte of a word.
std::uint32_t fletcher32(const std::byte* data, std::size_t n) {
  std::uint32_t a = 0, b = 0;
  std::size_t words = n / 2;
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  // Folded every 360 words, as libhdf5 does: the same blocks give the same sums bit for bit.
  while (words > 0) {
    const std::size_t block = std::min<std::size_t>(words, 360);
    words -= block;
    for (std::size_t i = 0; i < block; ++i, p += 2) {
      a += (static_cast<std::uint32_t>(p[0]) << 8) | p[1];
      b += a;
    }
    a = (a & 0xffff) + (a >> 16);
    b = (b & 0xffff) + (b >> 16);
  }
  if (n % 2 != 0) {
    a += static_cast<std::uint32_t>(p[0]) << 8;
    b += a;
    a = (a & 0xffff) + (a >> 16);
    b = (b & 0xffff) + (b >> 16);
  }
  a = (a & 0xffff) + (a >> 16);
  b = (b & 0xffff) + (b >> 16);
  return (b << 16) | a;
}

// Scratch buffers of one thread, reused across chunks (a chunk's worth each).
struct Scratch {
  std::vector<std::byte> raw;
  std::vector<std::byte> a;
  std::vector<std::byte> b;
};

Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}

// Undoes the pipeline on one stored chunk: filters in reverse order, skipping those whose bit
// is set in `mask` (HDF5 skipped them when writing, e.g. deflate that did not shrink the chunk).
// Throws Error(Corrupt) naming `what` for bytes that do not decode to exactly out_n bytes.
void decode_pipeline(const std::vector<FilterStep>& filters, std::uint32_t mask,
                     const std::byte* stored, std::size_t n, std::byte* out, std::size_t out_n,
                     const std::string& what) {
  const std::size_t nf = filters.size();
  const auto skipped = [&](std::size_t i) { return ((mask >> i) & 1u) != 0; };
  // in_size[i]: bytes that entered filter i when writing (known up to the first deflate).
  std::vector<std::size_t> in_size(nf + 1);
  std::size_t size = out_n;
  bool known = true;
  for (std::size_t i = 0; i < nf; ++i) {
    in_size[i] = known ? size : 0;
    if (skipped(i)) continue;
    if (filters[i].id == H5Z_FILTER_FLETCHER32) size += 4;
    if (filters[i].id == H5Z_FILTER_DEFLATE) known = false;
  }
  if (known && n != size) {
    raise(ErrorCode::Corrupt, what + ": stored chunk has " + std::to_string(n) +
                                  " bytes, its filters leave " + std::to_string(size));
  }
  // The last stage that moves bytes writes straight into `out` when its result is the chunk.
  std::size_t last_moving = nf;
  for (std::size_t i = nf; i-- > 0;) {
    if (!skipped(i) && filters[i].id != H5Z_FILTER_FLETCHER32) last_moving = i;
  }
  Scratch& scratch = thread_scratch();
  const std::byte* cur = stored;
  bool in_a = false;  // which scratch buffer the next stage writes
  for (std::size_t i = nf; i-- > 0;) {
    if (skipped(i)) continue;
    const FilterStep& f = filters[i];
    if (f.id == H5Z_FILTER_FLETCHER32) {
      if (n < 4) raise(ErrorCode::Corrupt, what + ": chunk too short for its Fletcher-32 sum");
      n -= 4;
      const auto* s = reinterpret_cast<const unsigned char*>(cur + n);
      const std::uint32_t stored_sum =
          s[0] | (s[1] << 8) | (s[2] << 16) | (static_cast<std::uint32_t>(s[3]) << 24);
      const std::uint32_t sum = fletcher32(cur, n);
      // libhdf5 also accepts the sum with the bytes of each 16-bit half swapped, as HDF5
      // before 1.6.3 wrote it on little-endian machines.
      const std::uint32_t swapped = ((sum & 0x00ff00ffu) << 8) | ((sum >> 8) & 0x00ff00ffu);
      if (stored_sum != sum && stored_sum != swapped) {
        raise(ErrorCode::Corrupt, what +
                                      ": Fletcher-32 checksum mismatch (the chunk's bytes "
                                      "are damaged)");
      }
      continue;
    }
    const std::size_t target = f.id == H5Z_FILTER_DEFLATE ? in_size[i] : n;
    if (f.id == H5Z_FILTER_DEFLATE && target == 0) {
      raise(ErrorCode::Internal, what + ": deflate size unknown");
    }
    std::byte* dst;
    if (i == last_moving && target == out_n) {
      dst = out;
    } else {
      std::vector<std::byte>& buf = in_a ? scratch.a : scratch.b;
      if (buf.size() < target) buf.resize(target);
      dst = buf.data();
      in_a = !in_a;
    }
    if (f.id == H5Z_FILTER_DEFLATE) {
      detail::zlib_decode(cur, n, dst, target, false, what);
    } else {  // shuffle; trailing bytes that make no whole element are stored as they are
      const std::size_t size_of = std::max<std::size_t>(f.shuffle_size, 1);
      const std::size_t elems = n / size_of;
      if (size_of > 1 && elems > 1) {
        detail::byte_unshuffle(cur, dst, elems, size_of);
        std::memcpy(dst + elems * size_of, cur + elems * size_of, n - elems * size_of);
      } else {
        std::memcpy(dst, cur, n);
      }
    }
    cur = dst;
    n = target;
  }
  if (n != out_n) {
    raise(ErrorCode::Corrupt, what + ": chunk decodes to " + std::to_string(n) +
                                  " bytes, expected " + std::to_string(out_n));
  }
  if (cur != out) std::memcpy(out, cur, n);
}

// ---- the ChunkedArray ----

enum class ReadPath : std::uint8_t {
  Fill,     // no storage: every chunk is the fill value
  InPlace,  // unfiltered chunks, all mapped from the file
  Decode,   // H5Dread_chunk + our own decoding
  Library,  // H5Dread of the chunk's box (filters we do not decode, compact, external, virtual)
};

class Hdf5Array final : public ChunkedArray {
 public:
  Hdf5Array(ArrayMeta meta, Shape chunks, std::vector<std::byte> fill, std::string file,
            std::string path, ReadPath read_path, std::vector<FilterStep> filters)
      : ChunkedArray(meta, std::move(chunks), std::move(fill)),
        file_(std::move(file)),
        path_(std::move(path)),
        read_path_(read_path),
        filters_(std::move(filters)),
        grid_(grid()),
        ids_(file_, path_, meta.shape) {
    // Stored chunks may outgrow the chunk a little (deflate of incompressible bytes, checksum);
    // far larger is a damaged index, refused before allocating.
    max_stored_ = chunk_nbytes() + chunk_nbytes() / 16 + 4096;
  }

  StorageInfo storage() const override { return storage_; }
  std::string name() const override { return file_ + ":" + path_; }

  void set_storage(StorageInfo info) { storage_ = std::move(info); }

  void map_in_place(MappedFile file, std::vector<std::uint64_t> offsets) {
    mapping_ = std::move(file);
    offsets_ = std::move(offsets);
    read_path_ = ReadPath::InPlace;
  }

  const std::byte* chunk_in_place(const Shape& coord) const override {
    if (read_path_ != ReadPath::InPlace) return nullptr;
    const std::uint64_t offset = offsets_[linear_index(coord)];
    return offset == kAbsent ? nullptr : mapping_.data() + offset;
  }

  void read_chunk(const Shape& coord, std::byte* out) const override {
    const std::size_t index = linear_index(coord);
    switch (read_path_) {
      case ReadPath::Fill:
        fill_chunk(out);
        return;
      case ReadPath::InPlace:
        if (offsets_[index] == kAbsent) {
          fill_chunk(out);
        } else {
          std::memcpy(out, mapping_.data() + offsets_[index], chunk_nbytes());
        }
        return;
      case ReadPath::Decode:
        read_raw_chunk(coord, out);
        return;
      case ReadPath::Library:
        read_through_library(coord, out);
        return;
    }
  }

  void reopen_after_fork() override { ids_.forget_after_fork(); }

 private:
  std::string chunk_what(const Shape& coord) const {
    return name() + ": chunk (" + format_shape(coord) + ")";
  }

  // Validates coord (a bad one is the caller's error, not a crash) and returns its C-order
  // index in the grid.
  std::size_t linear_index(const Shape& coord) const {
    if (coord.size() != grid_.size()) {
      raise(ErrorCode::InvalidArgument, name() + ": chunk coordinate (" + format_shape(coord) +
                                            ") has the wrong number of axes");
    }
    std::size_t index = 0;
    for (std::size_t i = 0; i < coord.size(); ++i) {
      if (coord[i] < 0 || coord[i] >= grid_[i]) {
        raise(ErrorCode::InvalidArgument, name() + ": chunk coordinate (" + format_shape(coord) +
                                              ") is outside the grid (" + format_shape(grid_) +
                                              ")");
      }
      index = index * static_cast<std::size_t>(grid_[i]) + static_cast<std::size_t>(coord[i]);
    }
    return index;
  }

  void fill_chunk(std::byte* out) const {
    const std::vector<std::byte>& fill = fill_value();
    const std::size_t n = chunk_nbytes();
    if (std::all_of(fill.begin(), fill.end(), [](std::byte b) { return b == std::byte{0}; })) {
      std::memset(out, 0, n);
      return;
    }
    // One element, then doubling copies.
    std::size_t have = std::min(fill.size(), n);
    std::memcpy(out, fill.data(), have);
    while (have < n) {
      const std::size_t step = std::min(have, n - have);
      std::memcpy(out + have, out, step);
      have += step;
    }
  }

  // H5Dget_chunk_storage_size of an unallocated chunk: 1.10.8 fails with exactly this
  // innermost error (later versions succeed with size 0, handled by the caller); a damaged
  // index fails deeper down (B-tree, file driver) and stays an error.
  static bool absent_chunk_error() {
    struct Innermost {
      hid_t maj = -1;
      hid_t min = -1;
      std::string func;
    } innermost;
    H5Ewalk2(
        H5E_DEFAULT, H5E_WALK_UPWARD,
        [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
          if (n == 0) {
            auto* in = static_cast<Innermost*>(data);
            in->maj = e->maj_num;
            in->min = e->min_num;
            in->func = e->func_name != nullptr ? e->func_name : "";
          }
          return 0;
        },
        &innermost);
    const bool absent = innermost.maj == H5E_DATASET && innermost.min == H5E_CANTGET &&
                        innermost.func == "H5D__get_chunk_storage_size";
    if (absent) H5Eclear2(H5E_DEFAULT);
    return absent;
  }

  void chunk_offset(const Shape& coord, hsize_t* offset) const {
    for (std::size_t i = 0; i < coord.size(); ++i) {
      offset[i] = static_cast<hsize_t>(coord[i] * chunk_shape()[i]);
    }
  }

  void read_raw_chunk(const Shape& coord, std::byte* out) const {
    detail::hdf5_quiet();
    const hid_t dataset = ids_.dataset();
    hsize_t offset[H5S_MAX_RANK];
    chunk_offset(coord, offset);
    hsize_t stored = 0;
    if (H5Dget_chunk_storage_size(dataset, offset, &stored) < 0) {
      if (absent_chunk_error()) {
        fill_chunk(out);
        return;
      }
      raise(ErrorCode::Corrupt,
            chunk_what(coord) + ": cannot look it up: " + detail::hdf5_error_detail());
    }
    if (stored == 0) {
      fill_chunk(out);
      return;
    }
    if (stored > max_stored_) {
      raise(ErrorCode::Corrupt, chunk_what(coord) + ": index says " + std::to_string(stored) +
                                    " stored bytes for a chunk of " +
                                    std::to_string(chunk_nbytes()) + " (damaged index?)");
    }
    // Without filters a chunk of the right size goes straight into out.
    const bool direct = filters_.empty() && stored == chunk_nbytes();
    std::vector<std::byte>& raw = thread_scratch().raw;
    if (!direct && raw.size() < stored) raw.resize(stored);
    std::byte* dst = direct ? out : raw.data();
    std::uint32_t mask = 0;
    if (H5Dread_chunk(dataset, H5P_DEFAULT, offset, &mask, dst) < 0) {
      raise(ErrorCode::Corrupt,
            chunk_what(coord) + ": cannot be read: " + detail::hdf5_error_detail());
    }
    if (direct) return;
    // Decoding runs outside libhdf5's global lock, so threads overlap here.
    decode_pipeline(filters_, mask, dst, stored, out, chunk_nbytes(), chunk_what(coord));
  }

  void read_through_library(const Shape& coord, std::byte* out) const {
    detail::hdf5_quiet();
    const std::string what = chunk_what(coord);
    const hid_t dataset = ids_.dataset();
    const ChunkRef ref = chunk(coord);
    const std::size_t nd = coord.size();
    Hdf5Handle type =
        Hdf5Handle::adopt(H5Dget_type(dataset), Hdf5Kind::Datatype, ErrorCode::Corrupt, what);
    // A selection per call: concurrent reads must not share one dataspace's selection.
    Hdf5Handle file_space =
        Hdf5Handle::adopt(H5Dget_space(dataset), Hdf5Kind::Dataspace, ErrorCode::Corrupt, what);
    Hdf5Handle memory_space;
    if (nd == 0) {
      memory_space =
          Hdf5Handle::adopt(H5Screate(H5S_SCALAR), Hdf5Kind::Dataspace, ErrorCode::Internal, what);
    } else {
      hsize_t start[H5S_MAX_RANK], count[H5S_MAX_RANK], dims[H5S_MAX_RANK], zero[H5S_MAX_RANK];
      for (std::size_t i = 0; i < nd; ++i) {
        start[i] = static_cast<hsize_t>(ref.box.start[i]);
        count[i] = static_cast<hsize_t>(ref.box.count[i]);
        dims[i] = static_cast<hsize_t>(chunk_shape()[i]);
        zero[i] = 0;
      }
      memory_space = Hdf5Handle::adopt(H5Screate_simple(static_cast<int>(nd), dims, nullptr),
                                       Hdf5Kind::Dataspace, ErrorCode::Internal, what);
      if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) <
              0 ||
          H5Sselect_hyperslab(memory_space.get(), H5S_SELECT_SET, zero, nullptr, count, nullptr) <
              0) {
        raise(ErrorCode::Internal, what + ": cannot select: " + detail::hdf5_error_detail());
      }
    }
    // Memory type = file type: libhdf5 copies the stored bytes without conversion.
    if (H5Dread(dataset, type.get(), memory_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
      raise(ErrorCode::Corrupt, what + ": libhdf5 cannot read it: " + detail::hdf5_error_detail());
    }
  }

  std::string file_;
  std::string path_;
  ReadPath read_path_;
  std::vector<FilterStep> filters_;
  StorageInfo storage_;
  Shape grid_;
  std::uint64_t max_stored_ = 0;
  ProcessDataset ids_;
  MappedFile mapping_;                  // InPlace: the whole file
  std::vector<std::uint64_t> offsets_;  // InPlace: file offset per chunk, kAbsent if none
};

// A C-order chunk shape of at most kLibraryChunkBytes: whole trailing axes while they fit,
// part of the next one, 1 on the outer axes.
Shape library_chunks(const Shape& shape, std::size_t itemsize) {
  Shape chunks(shape.size(), 1);
  std::uint64_t budget = std::max<std::uint64_t>(kLibraryChunkBytes / itemsize, 1);
  for (std::size_t i = shape.size(); i-- > 0;) {
    const std::uint64_t extent = static_cast<std::uint64_t>(std::max<std::int64_t>(shape[i], 1));
    if (extent <= budget) {
      chunks[i] = static_cast<std::int64_t>(extent);
      budget /= extent;
    } else {
      chunks[i] = static_cast<std::int64_t>(budget);
      budget = 1;
    }
  }
  return chunks;
}

std::string filter_name(H5Z_filter_t id, const char* name_in_file) {
  switch (id) {
    case H5Z_FILTER_DEFLATE:
      return "gzip";
    case H5Z_FILTER_SHUFFLE:
      return "shuffle";
    case H5Z_FILTER_FLETCHER32:
      return "fletcher32";
    case H5Z_FILTER_SZIP:
      return "szip";
    case H5Z_FILTER_NBIT:
      return "nbit";
    case H5Z_FILTER_SCALEOFFSET:
      return "scaleoffset";
    case 307:
      return "bzip2";
    case 32000:
      return "lzf";
    case 32001:
      return "blosc";
    case 32004:
      return "lz4";
    case 32015:
      return "zstd";
    default:
      return name_in_file[0] != '\0' ? std::string(name_in_file) : "filter " + std::to_string(id);
  }
}

// Reads the chunked layout: chunk shape, filters (deciding between our decoding and libhdf5's),
// storage figures, and for few unfiltered chunks their places in the file.
std::unique_ptr<ChunkedArray> open_chunked(hid_t file_id, hid_t dataset, hid_t dcpl, hid_t space,
                                           const ArrayMeta& meta, std::vector<std::byte> fill,
                                           const std::string& file, const std::string& path) {
  const std::string where = file + ":" + path;
  const int rank = meta.ndim();
  hsize_t dims[H5S_MAX_RANK];
  if (rank == 0 || H5Pget_chunk(dcpl, rank, dims) != rank) {
    raise(ErrorCode::Corrupt,
          where + ": cannot read the chunk shape: " + detail::hdf5_error_detail());
  }
  Shape chunks(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) chunks[static_cast<std::size_t>(i)] = dims[i];

  StorageInfo info;
  info.kind = "hdf5";
  info.layout = "chunked";
  std::vector<FilterStep> steps;
  std::vector<std::string> compressors;
  bool decodable = true;
  int deflates = 0;
  const int nf = H5Pget_nfilters(dcpl);
  if (nf < 0) raise(ErrorCode::Corrupt, where + ": cannot read the filter pipeline");
  for (int i = 0; i < nf; ++i) {
    unsigned flags = 0, config = 0;
    unsigned cd[8] = {};
    std::size_t n_cd = 8;
    char name[128] = {};
    const H5Z_filter_t id = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &n_cd, cd,
                                           sizeof name, name, &config);
    if (id < 0) {
      raise(ErrorCode::Corrupt, where + ": cannot read filter " + std::to_string(i) + ": " +
                                    detail::hdf5_error_detail());
    }
    const std::string label = filter_name(id, name);
    if (id == H5Z_FILTER_DEFLATE) {
      compressors.push_back("gzip(" + std::to_string(n_cd > 0 ? cd[0] : 0) + ")");
      ++deflates;
    } else if (id == H5Z_FILTER_SHUFFLE || id == H5Z_FILTER_FLETCHER32 || id == H5Z_FILTER_NBIT ||
               id == H5Z_FILTER_SCALEOFFSET) {
      info.filters.push_back(label);
    } else {
      compressors.push_back(label);
    }
    if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32) {
      decodable = false;
      if (H5Zfilter_avail(id) <= 0) {
        raise(ErrorCode::InvalidArgument,
              where + ": chunks use filter " + std::to_string(id) + " (" + label +
                  "), which this libhdf5 cannot decode; install its HDF5 plugin and set "
                  "HDF5_PLUGIN_PATH, or rewrite the dataset with gzip");
      }
    }
    FilterStep step;
    step.id = id;
    step.shuffle_size = id == H5Z_FILTER_SHUFFLE && n_cd > 0 ? cd[0] : meta.dtype.itemsize();
    steps.push_back(step);
  }
  // Two deflates leave an intermediate size we cannot know; leave them to libhdf5.
  if (deflates > 1) decodable = false;
  if (compressors.empty()) {
    info.compressor = "none";
  } else {
    for (const std::string& c : compressors) {
      info.compressor += (info.compressor.empty() ? "" : "+") + c;
    }
  }
  info.stored_bytes = H5Dget_storage_size(dataset);

  auto array = std::make_unique<Hdf5Array>(meta, chunks, std::move(fill), file, path,
                                           decodable ? ReadPath::Decode : ReadPath::Library,
                                           std::move(steps));
  info.chunks_total = array->n_chunks();
  if (info.chunks_total <= kMaxChunksToCount) {
    hsize_t stored = 0;
    if (H5Dget_num_chunks(dataset, space, &stored) < 0) {
      raise(ErrorCode::Corrupt,
            where + ": cannot count the stored chunks: " + detail::hdf5_error_detail());
    }
    info.chunks_stored = static_cast<std::int64_t>(stored);
  }

  if (nf == 0 && info.chunks_total <= kMaxChunksToMap && info.chunks_total > 0) {
    // Chunk addresses are relative to the HDF5 base address: add the userblock.
    Hdf5Handle fcpl = Hdf5Handle::adopt(H5Fget_create_plist(file_id), Hdf5Kind::PropertyList,
                                        ErrorCode::Corrupt, where);
    hsize_t userblock = 0;
    H5Pget_userblock(fcpl.get(), &userblock);
    MappedFile mapping = MappedFile::open(file, MapMode::ReadOnly);
    std::vector<std::uint64_t> offsets(static_cast<std::size_t>(info.chunks_total), kAbsent);
    const Shape grid = array->grid();
    for (std::int64_t k = 0; k < info.chunks_stored; ++k) {
      hsize_t at[H5S_MAX_RANK];
      unsigned mask = 0;
      haddr_t address = HADDR_UNDEF;
      hsize_t size = 0;
      if (H5Dget_chunk_info(dataset, space, static_cast<hsize_t>(k), at, &mask, &address, &size) <
          0) {
        raise(ErrorCode::Corrupt,
              where + ": cannot read the chunk index: " + detail::hdf5_error_detail());
      }
      std::size_t index = 0;
      for (int i = 0; i < rank; ++i) {
        const auto c = static_cast<std::int64_t>(at[i] / dims[i]);
        if (at[i] % dims[i] != 0 || c >= grid[static_cast<std::size_t>(i)]) {
          raise(ErrorCode::Corrupt, where +
                                        ": the chunk index holds a chunk at a position "
                                        "outside the chunk grid (damaged index)");
        }
        index = index * static_cast<std::size_t>(grid[static_cast<std::size_t>(i)]) +
                static_cast<std::size_t>(c);
      }
      const std::uint64_t begin = address + userblock;
      if (address == HADDR_UNDEF || size != array->chunk_nbytes() || begin > mapping.size() ||
          mapping.size() - begin < size) {
        raise(ErrorCode::Corrupt,
              where + ": chunk " + std::to_string(k) + " of the index (" + std::to_string(size) +
                  " bytes at " + std::to_string(begin) + ") does not fit the file of " +
                  std::to_string(mapping.size()) + " bytes or a chunk of " +
                  std::to_string(array->chunk_nbytes()) + " bytes (truncated file?)");
      }
      offsets[index] = begin;
    }
    array->map_in_place(std::move(mapping), std::move(offsets));
  }
  array->set_storage(std::move(info));
  return array;
}

}  // namespace

Hdf5Dataset open_hdf5(const std::string& file, const std::string& dataset) {
  detail::hdf5_quiet();
  const std::string path = absolute_path(file, dataset);
  const std::string where = file + ":" + path;
  check_file(file);
  Hdf5Handle file_id = open_file(file, ErrorCode::Corrupt);
  check_path(file_id.get(), file, path);
  Hdf5Handle dset =
      Hdf5Handle::adopt(H5Dopen2(file_id.get(), path.c_str(), H5P_DEFAULT), Hdf5Kind::Dataset,
                        ErrorCode::Corrupt, where + ": cannot open the dataset");
  Hdf5Handle type = Hdf5Handle::adopt(H5Dget_type(dset.get()), Hdf5Kind::Datatype,
                                      ErrorCode::Corrupt, where + ": cannot read the datatype");
  const DType dtype = dtype_of(type.get(), where);
  Hdf5Handle space = Hdf5Handle::adopt(H5Dget_space(dset.get()), Hdf5Kind::Dataspace,
                                       ErrorCode::Corrupt, where + ": cannot read the dataspace");
  const ArrayMeta meta = ArrayMeta::contiguous(dtype, shape_of(space.get(), where));
  Hdf5Handle dcpl =
      Hdf5Handle::adopt(H5Dget_create_plist(dset.get()), Hdf5Kind::PropertyList, ErrorCode::Corrupt,
                        where + ": cannot read the creation properties");
  std::vector<std::byte> fill = fill_value_of(dcpl.get(), type.get(), dtype.itemsize(), where);

  Hdf5Dataset result;
  const auto through_library = [&](const char* layout, ReadPath read_path) {
    StorageInfo info;
    info.kind = "hdf5";
    info.layout = layout;
    info.compressor = "none";
    info.stored_bytes = H5Dget_storage_size(dset.get());
    auto array = std::make_unique<Hdf5Array>(meta, library_chunks(meta.shape, dtype.itemsize()),
                                             std::move(fill), file, path, read_path,
                                             std::vector<FilterStep>{});
    info.chunks_total = array->n_chunks();
    info.chunks_stored = read_path == ReadPath::Fill ? 0 : info.chunks_total;
    array->set_storage(std::move(info));
    result.chunked = std::move(array);
  };
  switch (H5Pget_layout(dcpl.get())) {
    case H5D_CONTIGUOUS: {
      const int external = H5Pget_external_count(dcpl.get());
      if (external < 0) {
        raise(ErrorCode::Corrupt,
              where + ": cannot read the external file list: " + detail::hdf5_error_detail());
      }
      if (external > 0) {
        through_library("external", ReadPath::Library);
        break;
      }
      const haddr_t offset = H5Dget_offset(dset.get());
      if (offset == HADDR_UNDEF) {  // never written: no storage yet
        detail::hdf5_error_detail();
        through_library("contiguous", ReadPath::Fill);
        break;
      }
      struct stat st;
      if (::stat(file.c_str(), &st) != 0) raise_errno(file + ": cannot stat");
      const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
      if (offset > size || size - offset < meta.nbytes()) {
        raise(ErrorCode::Corrupt, where + ": the data needs bytes " + std::to_string(offset) +
                                      ".." + std::to_string(offset + meta.nbytes()) +
                                      " but the file has " + std::to_string(size) +
                                      " bytes (truncated file?)");
      }
      result.dense = std::make_unique<Source>(
          meta, MappedFile::open(file, MapMode::ReadOnly, offset, meta.nbytes()), "hdf5");
      break;
    }
    case H5D_CHUNKED:
      result.chunked = open_chunked(file_id.get(), dset.get(), dcpl.get(), space.get(), meta,
                                    std::move(fill), file, path);
      break;
    case H5D_COMPACT:
      through_library("compact", ReadPath::Library);
      break;
    case H5D_VIRTUAL:
      through_library("virtual", ReadPath::Library);
      break;
    default:
      raise(ErrorCode::Corrupt,
            where + ": cannot read the storage layout: " + detail::hdf5_error_detail());
  }
  // Every id opened here closes now (handles leave scope): workers forked after this return
  // inherit no open HDF5 file, and each process opens its own on its first read.
  return result;
}

}  // namespace mmc
