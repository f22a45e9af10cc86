// net_io.h — TCP transport: Nagle off, buffered, bind to the requested address, connect with a deadline.
#pragma once
#include <string>

#include "capc_gc/io_channel.h"

namespace capc_gc {

struct NetOptions {
  bool listen = false;             ///< true: bind + accept one peer (ALICE); false: connect (BOB)
  std::string host = "127.0.0.1";  ///< address to bind to or connect to; never all interfaces by default
  int port = 0;
  double connect_timeout_s = 30;   ///< deadline for accept / connect retries
  double io_timeout_s = 120;       ///< a blocked send or receive fails after this long instead of hanging
};

/// A TCP connection to the peer. Construction blocks until connected or throws NetError.
class NetIO : public IOChannel {
 public:
  explicit NetIO(const NetOptions& opt);
  /// emp-tool's signature: address == nullptr listens on 127.0.0.1, otherwise connects to address.
  NetIO(const char* address, int port, bool quiet = true);
  ~NetIO() override;

 protected:
  void raw_send(const uint8_t* data, size_t n) override;
  size_t raw_recv(uint8_t* data, size_t max) override;

 private:
  void open(const NetOptions& opt);
  int fd_ = -1;
  std::string peer_;
};

}  // namespace capc_gc
