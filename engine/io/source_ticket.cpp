// Source tickets (see source_ticket.hpp).
#include "io/source_ticket.hpp"

#include <hdf5.h>

#include <utility>

// AnyArray and open_array (their io header once they leave convert.hpp).
#include "io/view.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/select.hpp"

namespace mmc::detail {
namespace {

bool same_meta(const ArrayMeta& a, const ArrayMeta& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.strides == b.strides && a.order == b.order;
}

[[noreturn]] void raise_changed(const std::string& path, const std::string& what) {
  throw_error(ErrorCode::Io,
              path + ": " + what + " since it was opened (replaced or rewritten): open it again");
}

// True when libhdf5 held open files before this process first opened one through a ticket: a
// worker forked (through a fork server that closed every descriptor) from a caller that had
// HDF5 files open. libhdf5 shares an open file with a new open of the same file, so reads
// would go to a descriptor number that is gone or now names something else.
bool inherits_open_hdf5_files() {
  static const bool inherited = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE) > 0;
  return inherited;
}

}  // namespace

std::optional<SourceTicket> ticket_of(const Source& source, std::string* why) {
  const MappedFile& mapping = source.mapping();
  if (mapping.mode() == MapMode::CopyOnWrite) {
    *why = "a copy-on-write mapping (mode c) keeps its writes in this process";
    return std::nullopt;
  }
  if (mapping.borrowed()) {
    *why = "it is memory of this process, not a file";
    return std::nullopt;
  }
  if (mapping.descriptor() < 0) {
    *why = "its mapping no longer holds the file open";
    return std::nullopt;
  }
  SourceTicket ticket;
  ticket.kind = SourceTicket::Kind::Mapped;
  ticket.format = source.kind();
  ticket.path = mapping.path();
  ticket.offset = mapping.offset();
  ticket.length = mapping.size();
  ticket.fd = mapping.descriptor();
  ticket.meta = source.meta();
  return ticket;
}

std::optional<SourceTicket> ticket_of(const ChunkedArray& array, std::string* why) {
  SourceTicket ticket;
  ticket.kind = SourceTicket::Kind::Chunked;
  ticket.format = array.storage().kind;
  ticket.path = array.name();
  if (const auto* view = dynamic_cast<const ChunkedView*>(&array)) {
    if (dynamic_cast<const ChunkedView*>(&view->parent()) != nullptr) {
      *why = "a view of a view is not reopened by name";
      return std::nullopt;
    }
    ticket.path = view->parent().name();
    ticket.selection = view->selection();
  }
  ticket.meta = array.meta();
  ticket.chunk_shape = array.chunk_shape();
  return ticket;
}

AnyArray open_ticket(const SourceTicket& ticket) {
  if (ticket.kind == SourceTicket::Kind::Mapped) {
    if (ticket.fd < 0) {
      throw_error(ErrorCode::Internal, ticket.path + ": its ticket came without the open file");
    }
    MappedFile mapping =
        MappedFile::map(ticket.fd, ticket.path, MapMode::ReadOnly, ticket.offset, ticket.length);
    return AnyArray(Source(ticket.meta, std::move(mapping), ticket.format));
  }
  if (ticket.format == "hdf5" && inherits_open_hdf5_files()) {
    throw_error(ErrorCode::Io,
                ticket.path +
                    ": this process inherited open HDF5 files from the process it was "
                    "forked from, so it cannot open HDF5 files safely");
  }
  AnyArray array = open_array(ticket.path);
  if (!ticket.selection.empty()) array = select(array, parse_selection(ticket.selection));
  if (array.chunked() == nullptr || !same_meta(array.meta(), ticket.meta) ||
      array.chunked()->chunk_shape() != ticket.chunk_shape) {
    raise_changed(ticket.path, "has another dtype, shape or chunking");
  }
  return array;
}

}  // namespace mmc::detail
