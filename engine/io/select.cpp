// Views (select.hpp): numpy's basic slicing resolved against a shape, a dense view as a mapped
// Source over the selected span, a chunked view as a ChunkedView.
#include "mmc/select.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

#include "io/view.hpp"
#include "mmc/error.hpp"

namespace mmc {
namespace {

[[noreturn]] void bad_selection(const std::string& text, const std::string& why) {
  throw_error(ErrorCode::InvalidArgument,
              "bad selection '" + text + "': " + why +
                  " (write numpy's slices per axis, e.g. 2:20:3,5:30,: or 7,::-1)");
}

// An integer of the selection's text, or nothing for an empty part.
std::optional<std::int64_t> number(const std::string& text, const std::string& part) {
  if (part.empty()) return std::nullopt;
  std::int64_t v = 0;
  const char* first = part.data();
  const char* last = part.data() + part.size();
  if (*first == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (first == last || ec != std::errc() || ptr != last) {
    bad_selection(text, "'" + part + "' is not an integer");
  }
  return v;
}

// numpy's slice.indices(n): the first index, the step and the number of elements.
detail::ViewAxis resolve_slice(const AxisSlice& s, std::int64_t n) {
  const std::int64_t step = s.step;
  auto adjust = [n, step](std::int64_t v) {
    if (v < 0) {
      v += n;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= n) {
      v = step < 0 ? n - 1 : n;
    }
    return v;
  };
  const std::int64_t start = s.start ? adjust(*s.start) : (step < 0 ? n - 1 : 0);
  const std::int64_t stop = s.stop ? adjust(*s.stop) : (step < 0 ? -1 : n);
  std::int64_t count = 0;
  if (step < 0 && stop < start) count = (start - stop - 1) / (-step) + 1;
  if (step > 0 && start < stop) count = (stop - start - 1) / step + 1;
  return {count > 0 ? start : 0, step, count, false};
}

std::string axis_text(const AxisSlice& s) {
  if (s.is_index) return std::to_string(s.index);
  std::string t =
      (s.start ? std::to_string(*s.start) : "") + ":" + (s.stop ? std::to_string(*s.stop) : "");
  if (s.step != 1) t += ":" + std::to_string(s.step);
  return t;
}

}  // namespace

Selection parse_selection(const std::string& text) {
  if (text.empty()) bad_selection(text, "it is empty");
  Selection selection;
  std::size_t at = 0;
  for (;;) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    std::string item = text.substr(at, comma - at);
    // Spaces around an item are allowed, and one trailing comma ("0:2," as numpy's a[0:2,]).
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty() && comma == text.size() && !selection.empty()) return selection;
    if (item.empty()) bad_selection(text, "an empty item");
    AxisSlice s;
    const std::size_t c1 = item.find(':');
    if (c1 == std::string::npos) {
      s.is_index = true;
      s.index = *number(text, item);
    } else {
      const std::size_t c2 = item.find(':', c1 + 1);
      if (c2 != std::string::npos && item.find(':', c2 + 1) != std::string::npos) {
        bad_selection(text, "'" + item + "' has more than two ':'");
      }
      s.start = number(text, item.substr(0, c1));
      s.stop = number(
          text, item.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1));
      if (c2 != std::string::npos) {
        const auto step = number(text, item.substr(c2 + 1));
        if (step && *step == 0) bad_selection(text, "a slice step cannot be zero");
        if (step && *step == std::numeric_limits<std::int64_t>::min()) {
          bad_selection(text, "a step out of range");
        }
        if (step) s.step = *step;
      }
    }
    selection.push_back(s);
    if (comma == text.size()) return selection;
    at = comma + 1;
  }
}

std::string format_selection(const Selection& selection) {
  std::string text;
  for (const AxisSlice& s : selection) text += (text.empty() ? "" : ",") + axis_text(s);
  return text;
}

namespace detail {

std::vector<ViewAxis> resolve_selection(const Shape& shape, const Selection& selection) {
  const std::string text = format_selection(selection);
  if (selection.size() > shape.size()) {
    throw_error(ErrorCode::InvalidArgument,
                "selection '" + text + "' has " + std::to_string(selection.size()) +
                    " items for an array of " + std::to_string(shape.size()) + " axes");
  }
  std::vector<ViewAxis> axes;
  bool kept = false;
  for (std::size_t a = 0; a < shape.size(); ++a) {
    const std::int64_t n = shape[a];
    if (a >= selection.size()) {
      axes.push_back({0, 1, n, false});
      kept = true;
      continue;
    }
    const AxisSlice& s = selection[a];
    if (s.step == 0) throw_error(ErrorCode::InvalidArgument, "selection '" + text + "': step 0");
    if (!s.is_index) {
      axes.push_back(resolve_slice(s, n));
      kept = true;
      continue;
    }
    const std::int64_t i = s.index < 0 ? s.index + n : s.index;
    if (i < 0 || i >= n) {
      throw_error(ErrorCode::InvalidArgument,
                  "selection '" + text + "': index " + std::to_string(s.index) +
                      " is out of bounds for axis " + std::to_string(a) + " with size " +
                      std::to_string(n));
    }
    axes.push_back({i, 1, 1, true});
  }
  if (!kept) {
    throw_error(ErrorCode::InvalidArgument,
                "selection '" + text +
                    "' picks one element (an index on every axis): keep an axis, e.g. " +
                    std::to_string(selection.back().index) + ":" +
                    std::to_string(selection.back().index + 1) + " for the last one");
  }
  return axes;
}

namespace {

ArrayMeta view_meta(const ArrayMeta& parent, const std::vector<ViewAxis>& axes) {
  Shape shape;
  for (const ViewAxis& v : axes) {
    if (!v.index) shape.push_back(v.extent);
  }
  return ArrayMeta::contiguous(parent.dtype, shape, parent.order);
}

}  // namespace

ChunkedView::ChunkedView(std::shared_ptr<ChunkedArray> parent, std::vector<ViewAxis> axes,
                         std::string selection)
    : ChunkedArray(
          view_meta(parent->meta(), axes),
          [&] {
            // Chunks of about the parent's extent in its elements: a step s takes
            // every s-th element, so a view chunk spans about one parent chunk.
            Shape chunks;
            for (std::size_t a = 0; a < axes.size(); ++a) {
              if (axes[a].index) continue;
              const std::int64_t step = axes[a].step < 0 ? -axes[a].step : axes[a].step;
              const std::int64_t c = parent->chunk_shape()[a];
              chunks.push_back(std::max<std::int64_t>(1, (c + step - 1) / step));
            }
            return chunks;
          }(),
          parent->fill_value()),
      parent_(std::move(parent)),
      axes_(std::move(axes)),
      selection_(std::move(selection)) {}

StorageInfo ChunkedView::storage() const {
  StorageInfo info = parent_->storage();
  info.layout = "view [" + selection_ + "] of " + info.layout;
  info.chunks_total = n_chunks();
  info.chunks_stored = -1;
  return info;
}

std::string ChunkedView::name() const { return parent_->name() + "[" + selection_ + "]"; }

void ChunkedView::read_chunk(const Shape& coord, std::byte* out) const {
  const ArrayMeta& m = meta();
  const std::size_t nd = m.shape.size();
  const Shape& cs = chunk_shape();
  // The view box of this chunk, and the parent's bounding box of what it selects.
  Shape lo(nd), hi(nd);
  for (std::size_t i = 0; i < nd; ++i) {
    lo[i] = coord[i] * cs[i];
    hi[i] = std::min(m.shape[i], lo[i] + cs[i]);
    if (hi[i] <= lo[i]) return;
  }
  Box box;
  std::vector<std::size_t> view_axis(axes_.size(), nd);  // parent axis -> view axis
  for (std::size_t p = 0, v = 0; p < axes_.size(); ++p) {
    const ViewAxis& a = axes_[p];
    if (a.index) {
      box.start.push_back(a.first);
      box.count.push_back(1);
      continue;
    }
    view_axis[p] = v;
    const std::int64_t x = a.first + lo[v] * a.step, y = a.first + (hi[v] - 1) * a.step;
    box.start.push_back(std::min(x, y));
    box.count.push_back(std::max(x, y) - std::min(x, y) + 1);
    ++v;
  }
  const std::size_t item = m.dtype.itemsize();
  std::uint64_t elements = 1;
  for (std::int64_t c : box.count) elements *= static_cast<std::uint64_t>(c);
  std::vector<std::byte> parent_box(elements * item);
  parent_->read_box(box, parent_box.data());
  // Element strides: the parent box (C order) and the chunk (the view's order).
  std::vector<std::int64_t> bs(axes_.size()), out_strides(nd);
  std::int64_t s = 1;
  for (std::size_t p = axes_.size(); p-- > 0;) bs[p] = s, s *= box.count[p];
  s = 1;
  if (m.order == Order::C) {
    for (std::size_t i = nd; i-- > 0;) out_strides[i] = s, s *= cs[i];
  } else {
    for (std::size_t i = 0; i < nd; ++i) out_strides[i] = s, s *= cs[i];
  }
  Shape idx = lo;
  for (;;) {
    std::int64_t from = 0, to = 0;
    for (std::size_t p = 0; p < axes_.size(); ++p) {
      if (view_axis[p] == nd) continue;
      const std::size_t v = view_axis[p];
      from += (axes_[p].first + idx[v] * axes_[p].step - box.start[p]) * bs[p];
    }
    for (std::size_t i = 0; i < nd; ++i) to += (idx[i] - lo[i]) * out_strides[i];
    std::memcpy(out + static_cast<std::size_t>(to) * item,
                parent_box.data() + static_cast<std::size_t>(from) * item, item);
    std::size_t ax = nd;
    for (;;) {
      if (ax == 0) return;
      --ax;
      if (++idx[ax] < hi[ax]) break;
      idx[ax] = lo[ax];
    }
  }
}

}  // namespace detail

AnyArray select(const AnyArray& array, const Selection& selection) {
  const ArrayMeta& meta = array.meta();
  std::vector<detail::ViewAxis> axes = detail::resolve_selection(meta.shape, selection);
  const std::string text = format_selection(selection);
  if (array.chunked_) {
    AnyArray view(std::make_unique<detail::ChunkedView>(array.chunked_, std::move(axes), text));
    view.kind_ = array.kind_;
    return view;
  }
  // A dense view: the mapped span of the selected elements, strides ascending.
  const Source& parent = *array.dense_;
  const auto item = static_cast<std::int64_t>(meta.dtype.itemsize());
  std::int64_t first = 0, span = item;
  bool empty = false;
  ArrayMeta view;
  view.dtype = meta.dtype;
  view.order = meta.order;
  std::vector<int> reversed;
  for (std::size_t a = 0; a < axes.size(); ++a) {
    const detail::ViewAxis& v = axes[a];
    const std::int64_t stride = meta.strides[a];
    if (v.index) {
      first += v.first * stride;
      continue;
    }
    std::int64_t low = v.first, step = v.step;
    if (step < 0 && v.extent > 0) {
      low = v.first + (v.extent - 1) * step;
      step = -step;
      reversed.push_back(static_cast<int>(view.shape.size()));
    }
    first += low * stride;
    view.shape.push_back(v.extent);
    view.strides.push_back(step * stride);
    if (v.extent == 0) empty = true;
    span += (v.extent > 0 ? v.extent - 1 : 0) * step * stride;
  }
  const MappedFile& mapping = parent.mapping();
  const std::uint64_t offset = mapping.offset() + (empty ? 0 : static_cast<std::uint64_t>(first));
  const std::uint64_t length = empty ? mapping.size() : static_cast<std::uint64_t>(span);
  MappedFile mapped =
      mapping.borrowed()
          ? MappedFile::borrow(mapping.data() + (offset - mapping.offset()), length, mapping.path())
      : mapping.descriptor() >= 0
          ? MappedFile::map(mapping.descriptor(), mapping.path(), mapping.mode(), offset, length)
          : MappedFile::open(mapping.path(), mapping.mode(), offset, length);
  AnyArray out(Source(view, std::move(mapped), parent.kind()));
  out.name_ = array.name_ + "[" + text + "]";
  out.reversed_ = std::move(reversed);
  return out;
}

}  // namespace mmc
