// A chunked array's view (select.hpp): its chunks are boxes of the view, each read from the
// parent's bounding box of the elements it selects.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mmc/chunked.hpp"
#include "mmc/select.hpp"

namespace mmc::detail {

// How one axis of the parent is taken: a view axis (first + i * step) or a fixed index.
struct ViewAxis {
  std::int64_t first = 0;
  std::int64_t step = 1;
  std::int64_t extent = 0;  // of the view axis; unused for an index
  bool index = false;
};

// `axes`: one per parent axis, after select() resolved them against its shape.
std::vector<ViewAxis> resolve_selection(const Shape& shape, const Selection& selection);

class ChunkedView final : public ChunkedArray {
 public:
  ChunkedView(std::shared_ptr<ChunkedArray> parent, std::vector<ViewAxis> axes,
              std::string selection);

  StorageInfo storage() const override;
  std::string name() const override;
  const std::byte* chunk_in_place(const Shape&) const override { return nullptr; }
  void read_chunk(const Shape& coord, std::byte* out) const override;
  void reopen_after_fork() override { parent_->reopen_after_fork(); }

  const ChunkedArray& parent() const noexcept { return *parent_; }
  // The selection's canonical text (format_selection).
  const std::string& selection() const noexcept { return selection_; }

 private:
  std::shared_ptr<ChunkedArray> parent_;
  std::vector<ViewAxis> axes_;
  std::string selection_;
};

}  // namespace mmc::detail
