// io_channel.cpp — buffering and byte counting shared by every transport.
#include "capc_gc/io_channel.h"

#include <cstring>

namespace capc_gc {

IOChannel::IOChannel() : sbuf_(kBufSize), rbuf_(kBufSize) {}

void IOChannel::send_data(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  bytes_sent_ += n;
  if (slen_ + n > sbuf_.size()) {
    flush();
    if (n >= sbuf_.size()) {  // large payloads bypass the buffer
      raw_send(p, n);
      return;
    }
  }
  std::memcpy(sbuf_.data() + slen_, p, n);
  slen_ += n;
}

std::vector<uint8_t> IOChannel::take_read_ahead() {
  std::vector<uint8_t> rest(rbuf_.begin() + static_cast<long>(rpos_), rbuf_.begin() + static_cast<long>(rlen_));
  rpos_ = rlen_ = 0;
  return rest;
}

void IOChannel::flush() {
  if (slen_ == 0) return;
  size_t len = slen_;
  slen_ = 0;  // reset first: if raw_send throws, the channel is unusable anyway
  raw_send(sbuf_.data(), len);
}

void IOChannel::run_pending_check() {
  if (!pending_check_) return;
  std::function<void()> check = std::move(pending_check_);
  pending_check_ = nullptr;  // before running it: the check itself receives
  check();
}

void IOChannel::recv_data(void* data, size_t n) {
  flush();
  if (pending_check_) run_pending_check();
  auto* p = static_cast<uint8_t*>(data);
  bytes_received_ += n;
  size_t have = rlen_ - rpos_;
  if (have >= n) {
    std::memcpy(p, rbuf_.data() + rpos_, n);
    rpos_ += n;
    return;
  }
  std::memcpy(p, rbuf_.data() + rpos_, have);
  p += have;
  n -= have;
  rpos_ = rlen_ = 0;
  while (n >= rbuf_.size()) {  // large reads go straight to the destination
    size_t got = raw_recv(p, n);
    p += got;
    n -= got;
  }
  while (n > 0) {
    size_t got = raw_recv(rbuf_.data() + rlen_, rbuf_.size() - rlen_);
    rlen_ += got;
    size_t take = rlen_ - rpos_ < n ? rlen_ - rpos_ : n;
    std::memcpy(p, rbuf_.data() + rpos_, take);
    rpos_ += take;
    p += take;
    n -= take;
  }
}

}  // namespace capc_gc
