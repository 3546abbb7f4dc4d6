// Transport: framed messages over a worker's AF_UNIX stream socket. A payload of at most
// max_nbytes bytes travels inline after its header; a larger one is written once into a
// SharedSegment whose descriptor rides with the header (SCM_RIGHTS), and so do the descriptors
// the payload's values name (MessageFds: ArrayRef segments, a reduction's source).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/parallel.hpp"
#include "mmc/pool.hpp"
#include "os/unique_fd.hpp"
#include "pool/segment.hpp"

namespace mmc::detail {

enum class FrameKind : std::uint8_t {
  Task = 1,     // parent -> worker: run task `task` with the payload as argument
  Result = 2,   // worker -> parent: the result of task `task`
  Failure = 3,  // worker -> parent: task `task` threw; `code` and the message as payload
  Batch = 4,    // worker -> parent: several Result/Failure sub-frames, each inline, in order
  Group = 5,    // parent -> worker: several small tasks: u64 count, then per task id, size, bytes
};

inline constexpr std::uint8_t kInSegment = 1;  // FrameHeader::flags: payload is in a segment
inline constexpr std::uint32_t kFrameMagic = 0x6d6d6346;  // "Fcmm"

struct FrameHeader {
  std::uint32_t magic = kFrameMagic;
  FrameKind kind = FrameKind::Task;
  std::uint8_t flags = 0;
  std::uint16_t fds = 0;   // descriptors of the payload's values (after the segment's, if any)
  std::uint32_t code = 0;  // ErrorCode of a Failure
  // Payload bytes that are the pool's own framing (a batch header, a run time, a group's
  // index): neither counted in CallStats nor weighed against max_nbytes.
  std::uint32_t envelope = 0;
  std::uint64_t task = 0;
  std::uint64_t length = 0;  // payload bytes
};
static_assert(sizeof(FrameHeader) == 32);

// Inline bytes a frame may announce beyond max_nbytes: the framing of groups and batches of
// results, a failure's message. A peer's header that says more is refused before allocating.
inline constexpr std::uint64_t kFrameSlack = std::uint64_t{1} << 20;

// Payload bytes counted as they are framed or received (CallStats' transport fields). Atomic:
// the dispatcher counts, a caller's thread reads them (PoolCore::traffic).
struct TransportCounters {
  std::atomic<std::uint64_t> bytes_piped = 0;
  std::atomic<std::uint64_t> bytes_shared = 0;
  std::atomic<std::uint64_t> segments = 0;
};

// One Result or Failure inside a Batch payload: a FrameHeader followed by its inline payload.
struct SubFrame {
  FrameHeader header;
  ByteView payload;
};
// Appends a sub-frame to a Batch payload.
void append_subframe(Bytes& batch, FrameKind kind, std::uint64_t task, std::uint32_t code,
                     ByteView payload);
// Splits a Batch payload into its sub-frames (views into `batch`). Throws Error(Internal) for a
// malformed batch.
std::vector<SubFrame> split_batch(ByteView batch);

// A message ready to send, partially sent or not. Move-only.
class OutFrame {
 public:
  // Frames `payload`, whose first or last `envelope` bytes are framing (see FrameHeader): inline
  // when the rest is at most max_nbytes (and always when it is empty), else in a new
  // SharedSegment. Counts the rest into `counters`. Throws what SharedSegment::create throws.
  // `fds` travel with the header (the frame shares them until they are sent). Throws
  // Error(InvalidArgument) when there are more than kMaxFdsPerMessage - 1 of them.
  // REQUIRES: envelope <= payload.size().
  static OutFrame make(FrameKind kind, std::uint64_t task, Bytes payload, std::uint64_t max_nbytes,
                       TransportCounters& counters, std::uint32_t envelope = 0,
                       MessageFds fds = {});
  // A Failure frame; the message always travels inline and is not counted.
  static OutFrame failure(std::uint64_t task, ErrorCode code, const std::string& message);

  // Sends as much as the socket takes now. `dont_wait`: never block (the parent); otherwise
  // blocks until everything is sent (a worker). Returns true when the frame is fully sent.
  // Returns false with errno EAGAIN when the socket is full, throws Error(Io) for other errors
  // (EPIPE/ECONNRESET when the peer is gone: see peer_gone()).
  bool send_some(int socket, bool dont_wait);

 private:
  FrameHeader header_;
  Bytes inline_payload_;
  SharedSegment segment_;  // sent with the first byte of the header
  MessageFds fds_;         // likewise, after the segment's descriptor
  std::size_t sent_ = 0;   // bytes of header + inline payload already sent
};

// Raised by send_some/receive when the peer closed its end or died.
class PeerGone : public std::exception {
 public:
  const char* what() const noexcept override { return "peer closed its socket"; }
};

// A received message. The payload is either owned bytes or a read-only mapped segment.
struct InMessage {
  FrameHeader header;
  Bytes inline_payload;
  SharedSegment segment;
  MessageFds fds;  // the descriptors of the payload's values

  ByteView payload() const noexcept {
    if (header.flags & kInSegment) return segment.view();
    return {inline_payload.data(), inline_payload.size()};
  }
};

// Reassembles messages from a stream socket. Reads never cross a header/payload boundary, so a
// descriptor sent with a header always arrives while that header is being read.
class FrameReader {
 public:
  // For a peer that sends at most `max_nbytes` payload bytes inline per frame (plus
  // kFrameSlack of framing).
  explicit FrameReader(std::uint64_t max_nbytes);

  // Reads what is available (dont_wait) or blocks for one message. Returns a complete message
  // or nothing (socket drained, EAGAIN). Throws PeerGone on EOF or ECONNRESET, Error(Internal)
  // for a malformed frame (an inline length over the limit is refused before anything is
  // allocated; descriptors that do not match the header), Error(Io) for other errors. Counts
  // received payload bytes.
  std::optional<InMessage> receive(int socket, bool dont_wait, TransportCounters& counters);

 private:
  // Reads into [dst, dst+len); returns bytes read (0 means EAGAIN).
  std::size_t read_into(int socket, std::byte* dst, std::size_t len, bool dont_wait);

  std::uint64_t max_inline_;
  FrameHeader header_;
  std::size_t header_got_ = 0;
  bool have_header_ = false;
  std::vector<UniqueFd> received_fds_;  // the frame's descriptors, the segment's first
  Bytes payload_;
  std::size_t payload_got_ = 0;
};

}  // namespace mmc::detail
