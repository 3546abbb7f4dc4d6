// The format-independent part of ChunkedArray: grid arithmetic and reading boxes.
#include "mmc/chunked.hpp"

#include <algorithm>
#include <cstring>

#include "io/box.hpp"
#include "io/chunk_limits.hpp"
#include "mmc/error.hpp"

namespace mmc {

std::int64_t Box::size() const noexcept {
  std::int64_t n = 1;
  for (std::int64_t c : count) n *= c;
  return n;
}

std::string detail::chunk_size_problem(std::uint64_t chunk_bytes, std::uint64_t array_bytes) {
  const std::string makes = "makes " + std::to_string(chunk_bytes) + "-byte chunks";
  if (chunk_bytes > kMaxDecodedChunkBytes) return makes + ", over the 2 GiB a chunk may decode to";
  if (chunk_bytes > array_bytes && chunk_bytes > kMaxChunkBeyondArrayBytes) {
    return makes + " for an array of " + std::to_string(array_bytes) +
           " bytes (over 64 MiB and larger than the whole array: damaged metadata?)";
  }
  return {};
}

ChunkedArray::ChunkedArray(ArrayMeta meta, Shape chunk_shape, std::vector<std::byte> fill)
    : meta_(std::move(meta)), chunk_shape_(std::move(chunk_shape)), fill_(std::move(fill)) {
  if (chunk_shape_.size() != meta_.shape.size()) {
    throw_error(ErrorCode::Corrupt, "chunk shape " + format_shape(chunk_shape_) + " has " +
                                        std::to_string(chunk_shape_.size()) + " axes, the array " +
                                        std::to_string(meta_.shape.size()));
  }
  std::uint64_t n = meta_.dtype.itemsize();
  for (std::int64_t c : chunk_shape_) {
    if (c <= 0)
      throw_error(ErrorCode::Corrupt,
                  "chunk shape " + format_shape(chunk_shape_) + " has an extent below 1");
    n = detail::checked_mul(n, static_cast<std::uint64_t>(c), "chunk size");
  }
  const std::string problem = detail::chunk_size_problem(n, meta_.nbytes());
  if (!problem.empty()) {  // metadata from a file: damaged or hostile
    throw_error(ErrorCode::Corrupt, "chunk shape " + format_shape(chunk_shape_) + " " + problem);
  }
  n_chunks();  // checks that the grid's cell count fits
  if (fill_.empty()) fill_.assign(meta_.dtype.itemsize(), std::byte{0});
  if (fill_.size() != meta_.dtype.itemsize()) {
    throw_error(ErrorCode::Internal, "fill value of the wrong size");
  }
}

std::uint64_t ChunkedArray::chunk_nbytes() const noexcept {
  std::uint64_t n = meta_.dtype.itemsize();
  for (std::int64_t c : chunk_shape_) n *= static_cast<std::uint64_t>(c);
  return n;
}

Shape ChunkedArray::grid() const {
  Shape g(meta_.shape.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    // Not (shape + chunk - 1) / chunk, which overflows for a shape near 2^63.
    g[i] = meta_.shape[i] / chunk_shape_[i] + (meta_.shape[i] % chunk_shape_[i] != 0 ? 1 : 0);
  }
  return g;
}

std::int64_t ChunkedArray::n_chunks() const {
  std::uint64_t n = 1;
  for (std::int64_t g : grid()) {
    if (g == 0) return 0;
    n = detail::checked_mul(n, static_cast<std::uint64_t>(g), "chunk grid");
  }
  return static_cast<std::int64_t>(n);
}

Shape ChunkedArray::chunk_coord(std::int64_t index) const {
  Shape g = grid();
  Shape coord(g.size());
  for (std::size_t i = g.size(); i-- > 0;) {
    coord[i] = g[i] == 0 ? 0 : index % g[i];
    index = g[i] == 0 ? 0 : index / g[i];
  }
  return coord;
}

ChunkRef ChunkedArray::chunk(const Shape& coord) const {
  ChunkRef ref;
  ref.coord = coord;
  ref.box.start.resize(coord.size());
  ref.box.count.resize(coord.size());
  for (std::size_t i = 0; i < coord.size(); ++i) {
    ref.box.start[i] = coord[i] * chunk_shape_[i];
    ref.box.count[i] = std::min(chunk_shape_[i], meta_.shape[i] - ref.box.start[i]);
  }
  return ref;
}

namespace {

// Copies the intersection [lo, hi) of a decoded chunk (starting at chunk_start) to `out`, where
// element idx goes to out + sum((idx[i] - origin[i]) * out_strides[i]) (byte strides). Runs
// along the last axis are copied whole when both sides are contiguous there.
void copy_intersection(const std::byte* chunk, const Shape& chunk_shape, Order chunk_order,
                       const Shape& chunk_start, const Shape& lo, const Shape& hi,
                       std::size_t itemsize, std::byte* out, const Shape& origin,
                       const std::vector<std::int64_t>& out_strides) {
  const std::size_t nd = lo.size();
  std::vector<std::int64_t> cs(nd);  // element strides of the chunk buffer
  std::int64_t s = 1;
  if (chunk_order == Order::C) {
    for (std::size_t i = nd; i-- > 0;) cs[i] = s, s *= chunk_shape[i];
  } else {
    for (std::size_t i = 0; i < nd; ++i) cs[i] = s, s *= chunk_shape[i];
  }
  const auto item = static_cast<std::int64_t>(itemsize);
  const bool runs = cs[nd - 1] == 1 && out_strides[nd - 1] == item;
  Shape idx = lo;
  const std::int64_t run = hi[nd - 1] - lo[nd - 1];
  for (;;) {
    std::int64_t c = 0, o = 0;
    for (std::size_t i = 0; i < nd; ++i) {
      c += (idx[i] - chunk_start[i]) * cs[i];
      o += (idx[i] - origin[i]) * out_strides[i];
    }
    if (runs) {
      std::memcpy(out + o, chunk + c * item, static_cast<std::size_t>(run * item));
    } else {
      for (std::int64_t k = 0; k < run; ++k) {
        std::memcpy(out + o + k * out_strides[nd - 1], chunk + (c + k * cs[nd - 1]) * item,
                    itemsize);
      }
    }
    std::size_t ax = nd - 1;
    for (;;) {
      if (ax == 0) return;
      --ax;
      if (++idx[ax] < hi[ax]) break;
      idx[ax] = lo[ax];
    }
  }
}

}  // namespace

namespace detail {

void check_box(const ArrayMeta& meta, const Box& box) {
  const std::size_t nd = meta.shape.size();
  if (box.start.size() != nd || box.count.size() != nd) {
    throw_error(ErrorCode::InvalidArgument, "box has the wrong number of axes");
  }
  for (std::size_t i = 0; i < nd; ++i) {
    if (box.start[i] < 0 || box.count[i] < 0 || box.start[i] + box.count[i] > meta.shape[i]) {
      throw_error(ErrorCode::InvalidArgument,
                  "box start " + format_shape(box.start) + " count " + format_shape(box.count) +
                      " lies outside the array " + format_shape(meta.shape));
    }
  }
}

}  // namespace detail

void ChunkedArray::read_box(const Box& box, std::byte* out) const {
  detail::check_box(meta_, box);
  const std::size_t nd = meta_.shape.size();
  std::vector<std::int64_t> strides(nd);
  std::int64_t s = static_cast<std::int64_t>(meta_.dtype.itemsize());
  for (std::size_t i = nd; i-- > 0;) strides[i] = s, s *= box.count[i];
  copy_box(box, out, box.start, strides);
}

void ChunkedArray::read_into(const Box& box, std::byte* base,
                             const std::vector<std::int64_t>& strides) const {
  detail::check_box(meta_, box);
  if (strides.size() != meta_.shape.size()) {
    throw_error(ErrorCode::InvalidArgument, "read_into: strides have the wrong number of axes");
  }
  copy_box(box, base, Shape(meta_.shape.size(), 0), strides);
}

bool ChunkedArray::lands_whole(const Box& chunk_box, const Shape& lo, const Shape& hi,
                               const std::vector<std::int64_t>& out_strides) const {
  const std::size_t nd = chunk_shape_.size();
  std::vector<std::int64_t> cs(nd);  // byte strides of a decoded chunk
  std::int64_t s = static_cast<std::int64_t>(meta_.dtype.itemsize());
  if (meta_.order == Order::C) {
    for (std::size_t i = nd; i-- > 0;) cs[i] = s, s *= chunk_shape_[i];
  } else {
    for (std::size_t i = 0; i < nd; ++i) cs[i] = s, s *= chunk_shape_[i];
  }
  for (std::size_t i = 0; i < nd; ++i) {
    if (chunk_box.count[i] != chunk_shape_[i] || lo[i] != chunk_box.start[i] ||
        hi[i] != chunk_box.start[i] + chunk_box.count[i]) {
      return false;
    }
    if (chunk_shape_[i] > 1 && out_strides[i] != cs[i]) return false;
  }
  return true;
}

void ChunkedArray::copy_box(const Box& box, std::byte* out, const Shape& origin,
                            const std::vector<std::int64_t>& out_strides) const {
  const std::size_t nd = meta_.shape.size();
  const std::size_t itemsize = meta_.dtype.itemsize();
  if (box.size() == 0) return;
  if (nd == 0) {
    const std::byte* p = chunk_in_place({});
    if (p != nullptr) {
      std::memcpy(out, p, itemsize);
    } else {
      std::vector<std::byte> buf(chunk_nbytes());
      read_chunk({}, buf.data());
      std::memcpy(out, buf.data(), itemsize);
    }
    return;
  }
  // The range of chunk coordinates the box touches; each chunk is decoded once.
  Shape first(nd), last(nd);
  for (std::size_t i = 0; i < nd; ++i) {
    first[i] = box.start[i] / chunk_shape_[i];
    last[i] = (box.start[i] + box.count[i] - 1) / chunk_shape_[i];
  }
  std::vector<std::byte> buf;
  Shape coord = first;
  for (;;) {
    ChunkRef ref = chunk(coord);
    Shape lo(nd), hi(nd);
    for (std::size_t i = 0; i < nd; ++i) {
      lo[i] = std::max(box.start[i], ref.box.start[i]);
      hi[i] = std::min(box.start[i] + box.count[i], ref.box.start[i] + ref.box.count[i]);
    }
    const std::byte* data = chunk_in_place(coord);
    if (data == nullptr && lands_whole(ref.box, lo, hi, out_strides)) {
      // The whole chunk falls in the box and its bytes are one run of the destination in the
      // chunk's own layout: decode straight there, with no copy.
      std::int64_t o = 0;
      for (std::size_t i = 0; i < nd; ++i) o += (ref.box.start[i] - origin[i]) * out_strides[i];
      read_chunk(coord, out + o);
    } else {
      if (data == nullptr) {
        buf.resize(chunk_nbytes());
        read_chunk(coord, buf.data());
        data = buf.data();
      }
      copy_intersection(data, chunk_shape_, meta_.order, ref.box.start, lo, hi, itemsize, out,
                        origin, out_strides);
    }
    std::size_t ax = nd;
    for (;;) {
      if (ax == 0) return;
      --ax;
      if (++coord[ax] <= last[ax]) break;
      coord[ax] = first[ax];
    }
  }
}

}  // namespace mmc
