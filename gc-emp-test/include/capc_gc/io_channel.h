// io_channel.h — a buffered, byte-counting, bidirectional channel; transports (TCP, Python) derive from it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "capc_gc/block.h"

namespace capc_gc {

/// Buffered I/O over a reliable byte stream. Sends are buffered until flush() or the next receive, so a
/// protocol round costs one write system call per direction.
class IOChannel {
 public:
  IOChannel();
  virtual ~IOChannel() = default;
  IOChannel(const IOChannel&) = delete;
  IOChannel& operator=(const IOChannel&) = delete;

  void send_data(const void* data, size_t n);
  /// Flushes pending sends first, so the peer is never left waiting on bytes we hold.
  void recv_data(void* data, size_t n);
  void flush();

  void send_block(const block* b, size_t n) { send_data(b, 16 * n); }
  void recv_block(block* b, size_t n) { recv_data(b, 16 * n); }

  /// Run `check` right before the next receive (after pending sends are flushed): a party can send its
  /// first message of a round before it reads and verifies what the peer sent first. Cleared once run.
  void before_next_recv(std::function<void()> check) { pending_check_ = std::move(check); }
  bool has_pending_check() const { return static_cast<bool>(pending_check_); }
  /// Run a pending check now (a round that ends without receiving anything still verifies the peer).
  void run_pending_check();
  void clear_pending_check() { pending_check_ = nullptr; }

  /// Bytes read ahead from the stream but not consumed yet, removed from the buffer. A transport that
  /// shares its stream with other traffic hands them back after a program, so that nothing the peer
  /// sent after the circuit's last byte is swallowed.
  std::vector<uint8_t> take_read_ahead();

  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t bytes_received() const { return bytes_received_; }

 protected:
  /// Write all n bytes or throw.
  virtual void raw_send(const uint8_t* data, size_t n) = 0;
  /// Read between 1 and max bytes, or throw (peer closed, timeout).
  virtual size_t raw_recv(uint8_t* data, size_t max) = 0;

 private:
  static constexpr size_t kBufSize = 1 << 18;
  std::vector<uint8_t> sbuf_;
  size_t slen_ = 0;
  std::vector<uint8_t> rbuf_;
  size_t rpos_ = 0, rlen_ = 0;
  uint64_t bytes_sent_ = 0, bytes_received_ = 0;
  std::function<void()> pending_check_;
};

}  // namespace capc_gc
