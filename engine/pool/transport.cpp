// Transport framing: sendmsg/recvmsg with MSG_NOSIGNAL (no SIGPIPE), EINTR retried, segment
// descriptors passed with SCM_RIGHTS and received close-on-exec.
#include "pool/transport.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "os/fd_passing.hpp"

namespace mmc::detail {
namespace {

constexpr std::size_t kMaxFailureMessage = 64 * 1024;

bool valid_kind(FrameKind kind) {
  return kind == FrameKind::Task || kind == FrameKind::Result || kind == FrameKind::Failure ||
         kind == FrameKind::Batch || kind == FrameKind::Group;
}

}  // namespace

void append_subframe(Bytes& batch, FrameKind kind, std::uint64_t task, std::uint32_t code,
                     ByteView payload) {
  FrameHeader header;
  header.kind = kind;
  header.task = task;
  header.code = code;
  header.length = payload.size;
  const auto* h = reinterpret_cast<const std::byte*>(&header);
  batch.insert(batch.end(), h, h + sizeof header);
  batch.insert(batch.end(), payload.data, payload.data + payload.size);
}

std::vector<SubFrame> split_batch(ByteView batch) {
  std::vector<SubFrame> frames;
  std::size_t pos = 0;
  while (pos < batch.size) {
    SubFrame frame;
    if (batch.size - pos < sizeof frame.header) {
      throw_error(ErrorCode::Internal, "transport: a batch of results ends inside a header");
    }
    std::memcpy(&frame.header, batch.data + pos, sizeof frame.header);
    pos += sizeof frame.header;
    const FrameKind kind = frame.header.kind;
    if (frame.header.magic != kFrameMagic ||
        (kind != FrameKind::Result && kind != FrameKind::Failure) || frame.header.flags != 0 ||
        frame.header.length > batch.size - pos) {
      throw_error(ErrorCode::Internal, "transport: malformed result in a batch");
    }
    frame.payload = {batch.data + pos, static_cast<std::size_t>(frame.header.length)};
    pos += frame.header.length;
    frames.push_back(frame);
  }
  return frames;
}

OutFrame OutFrame::make(FrameKind kind, std::uint64_t task, Bytes payload, std::uint64_t max_nbytes,
                        TransportCounters& counters, std::uint32_t envelope, MessageFds fds) {
  if (fds.size() >= kMaxFdsPerMessage) {
    throw_error(
        ErrorCode::InvalidArgument,
        "a batch names " + std::to_string(fds.size()) + " shared segments; at most " +
            std::to_string(kMaxFdsPerMessage - 1) +
            " travel with one batch (use a smaller chunksize, or fewer ArrayRefs per task)");
  }
  OutFrame frame;
  frame.header_.fds = static_cast<std::uint16_t>(fds.size());
  frame.fds_ = std::move(fds);
  frame.header_.kind = kind;
  frame.header_.task = task;
  frame.header_.length = payload.size();
  frame.header_.envelope = envelope;
  const std::size_t data = payload.size() - envelope;
  if (data != 0 && data > max_nbytes) {
    frame.segment_ = SharedSegment::create({payload.data(), payload.size()});
    frame.header_.flags = kInSegment;
    counters.bytes_shared += data;
    counters.segments += 1;
  } else {
    counters.bytes_piped += data;
    frame.inline_payload_ = std::move(payload);
  }
  return frame;
}

OutFrame OutFrame::failure(std::uint64_t task, ErrorCode code, const std::string& message) {
  OutFrame frame;
  frame.header_.kind = FrameKind::Failure;
  frame.header_.task = task;
  frame.header_.code = static_cast<std::uint32_t>(code);
  const std::size_t size = std::min(message.size(), kMaxFailureMessage);
  const auto* bytes = reinterpret_cast<const std::byte*>(message.data());
  frame.inline_payload_.assign(bytes, bytes + size);
  frame.header_.length = size;
  return frame;
}

bool OutFrame::send_some(int socket, bool dont_wait) {
  constexpr std::size_t kHeaderSize = sizeof(FrameHeader);
  const std::size_t total = kHeaderSize + inline_payload_.size();
  while (sent_ < total) {
    iovec iov[2];
    int iov_count = 0;
    if (sent_ < kHeaderSize) {
      iov[iov_count++] = {reinterpret_cast<char*>(&header_) + sent_, kHeaderSize - sent_};
      if (!inline_payload_.empty()) {
        iov[iov_count++] = {inline_payload_.data(), inline_payload_.size()};
      }
    } else {
      iov[iov_count++] = {inline_payload_.data() + (sent_ - kHeaderSize), total - sent_};
    }
    int fds[kMaxFdsPerMessage];
    std::size_t fd_count = 0;
    if (sent_ == 0) {
      if (segment_.fd() >= 0) fds[fd_count++] = segment_.fd();
      for (std::size_t i = 0; i < fds_.size(); ++i) fds[fd_count++] = fds_.at(i);
    }
    const ssize_t n =
        send_with_fds(socket, iov, static_cast<std::size_t>(iov_count), fds, fd_count, dont_wait);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      if (errno == EPIPE || errno == ECONNRESET) throw PeerGone();
      throw_errno("sending to a worker socket");
    }
    sent_ += static_cast<std::size_t>(n);
    // The descriptors in flight keep what they name alive; ours are no longer needed.
    if (n > 0 && segment_.fd() >= 0) segment_ = SharedSegment();
    if (n > 0 && !fds_.empty()) fds_ = MessageFds();
  }
  return true;
}

FrameReader::FrameReader(std::uint64_t max_nbytes)
    : max_inline_(max_nbytes > ~std::uint64_t{0} - kFrameSlack ? ~std::uint64_t{0}
                                                               : max_nbytes + kFrameSlack) {
  received_fds_.reserve(kMaxFdsPerMessage);  // receiving never allocates
}

std::size_t FrameReader::read_into(int socket, std::byte* dst, std::size_t len, bool dont_wait) {
  // Descriptors go into received_fds_ before anything can throw; only a header's first read
  // may bring any.
  const std::size_t room = have_header_ || header_got_ > 0 ? 0 : kMaxFdsPerMessage;
  const Received got = receive_with_fds(socket, dst, len, dont_wait, received_fds_, room);
  if (got.bytes < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == ECONNRESET) throw PeerGone();
    throw_errno("reading a worker socket");
  }
  if (got.cut_off) {
    throw_error(ErrorCode::Io,
                "transport: descriptors sent with a frame were dropped on receipt (this process "
                "is at its open-file limit, RLIMIT_NOFILE: raise `ulimit -n`)");
  }
  if (got.extra_fds) {
    throw_error(ErrorCode::Internal,
                "transport: descriptors arrived outside a frame's first bytes");
  }
  if (got.bytes == 0) throw PeerGone();
  return static_cast<std::size_t>(got.bytes);
}

std::optional<InMessage> FrameReader::receive(int socket, bool dont_wait,
                                              TransportCounters& counters) {
  for (;;) {
    if (!have_header_) {
      auto* dst = reinterpret_cast<std::byte*>(&header_) + header_got_;
      const std::size_t n = read_into(socket, dst, sizeof header_ - header_got_, dont_wait);
      if (n == 0) return std::nullopt;
      header_got_ += n;
      if (header_got_ < sizeof header_) continue;
      const bool in_segment = (header_.flags & kInSegment) != 0;
      const std::size_t want_fds = (in_segment ? 1 : 0) + std::size_t{header_.fds};
      if (header_.magic != kFrameMagic || !valid_kind(header_.kind) ||
          (in_segment && header_.length == 0) || received_fds_.size() != want_fds ||
          header_.envelope > header_.length) {
        received_fds_.clear();
        throw_error(ErrorCode::Internal, "transport: malformed frame on a worker socket");
      }
      if (!in_segment && header_.length > max_inline_) {
        received_fds_.clear();
        throw_error(ErrorCode::Internal,
                    "transport: a frame header announces " + std::to_string(header_.length) +
                        " inline bytes, over this socket's limit of " +
                        std::to_string(max_inline_) +
                        " (max_nbytes + framing): the peer is broken or not ours");
      }
      have_header_ = true;
      payload_got_ = 0;
      if (!in_segment) payload_.resize(header_.length);
    }
    const bool in_segment = (header_.flags & kInSegment) != 0;
    if (!in_segment && payload_got_ < payload_.size()) {
      const std::size_t n = read_into(socket, payload_.data() + payload_got_,
                                      payload_.size() - payload_got_, dont_wait);
      if (n == 0) return std::nullopt;
      payload_got_ += n;
      continue;
    }
    InMessage message;
    message.header = header_;
    const bool counted = header_.kind != FrameKind::Failure;
    const std::uint64_t data = header_.length - header_.envelope;
    std::size_t next_fd = 0;
    if (in_segment) {
      message.segment =
          SharedSegment::map_received(std::move(received_fds_[next_fd++]), header_.length);
      if (counted) {
        counters.bytes_shared += data;
        counters.segments += 1;
      }
    } else {
      message.inline_payload = std::move(payload_);
      payload_ = Bytes();
      if (counted) counters.bytes_piped += data;
    }
    for (; next_fd < received_fds_.size(); ++next_fd) {
      message.fds.adopt(received_fds_[next_fd].release());
    }
    received_fds_.clear();
    have_header_ = false;
    header_got_ = 0;
    payload_got_ = 0;
    return message;
  }
}

}  // namespace mmc::detail
