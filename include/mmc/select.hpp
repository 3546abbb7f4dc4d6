// Views: a part of any array picked by numpy's basic slicing, without reading or copying it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mmc/open.hpp"

namespace mmc {

// One axis of a selection, as numpy's basic indexing: slice(start, stop, step), or a single
// index, which drops the axis. Negative start, stop and index count from the end.
struct AxisSlice {
  std::optional<std::int64_t> start;
  std::optional<std::int64_t> stop;
  std::int64_t step = 1;  // never 0
  bool is_index = false;
  std::int64_t index = 0;
};

// One item per axis, from the first; axes past the last item are taken whole (':').
using Selection = std::vector<AxisSlice>;

// "2:20:3,5:30,:", "7,::-1", "-1": one item per axis, as inside numpy's brackets. Throws
// Error(InvalidArgument) naming the bad item.
Selection parse_selection(const std::string& text);
// The canonical text of a selection ("2:20:3,5:30,:").
std::string format_selection(const Selection& selection);

// The view of `array` that `selection` picks, numpy's a[selection] for basic slicing: no byte
// is read or copied, and a reduction of the view reads only the selected elements (a dense
// source: the file's pages under them; a chunked one: the chunks they touch). Throws
// Error(InvalidArgument) for more items than axes, a zero step or an index out of bounds
// (numpy's IndexError), naming the axis.
//
// A dense view is itself a mapped Source: its strides must be positive, so an axis taken with
// a negative step is laid out ascending and listed in AnyArray::reversed_axes(); the reduce()
// and reduce_each() of an AnyArray put such kept axes back in the view's order (argmin and
// argmax over such an axis are refused: their ties would resolve the other way). A chunked
// view reads its elements in the view's order and has none.
AnyArray select(const AnyArray& array, const Selection& selection);

}  // namespace mmc
