// net_io.cpp — TCP sockets for the 2PC programs.
#include "capc_gc/net_io.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "capc_gc/errors.h"

namespace capc_gc {

namespace {

using Clock = std::chrono::steady_clock;

std::string errstr() { return std::strerror(errno); }

void set_timeouts(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - std::floor(seconds)) * 1e6);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void tune(int fd, double io_timeout) {
  int one = 1;
  // Every protocol message is small and latency bound; the channel does its own buffering.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int buf = 1 << 21;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (io_timeout > 0) set_timeouts(fd, io_timeout);
}

struct AddrList {
  addrinfo* head = nullptr;
  ~AddrList() {
    if (head) freeaddrinfo(head);
  }
};

void resolve(const std::string& host, int port, bool passive, AddrList& out) {
  if (port <= 0 || port > 65535) throw InputError("port must be in 1..65535, got " + std::to_string(port));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &out.head);
  if (rc != 0) throw NetError("cannot resolve host '" + host + "': " + gai_strerror(rc));
}

}  // namespace

NetIO::NetIO(const NetOptions& opt) { open(opt); }

NetIO::NetIO(const char* address, int port, bool /*quiet*/) {
  NetOptions opt;
  opt.listen = (address == nullptr);
  if (address != nullptr) opt.host = address;
  opt.port = port;
  open(opt);
}

void NetIO::open(const NetOptions& opt) {
  AddrList addrs;
  resolve(opt.host, opt.port, opt.listen, addrs);
  peer_ = opt.host + ":" + std::to_string(opt.port);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(opt.connect_timeout_s));
  if (opt.listen) {
    addrinfo* a = addrs.head;
    int lfd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (lfd < 0) throw NetError("socket() failed: " + errstr());
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, a->ai_addr, a->ai_addrlen) != 0) {
      std::string e = errstr();
      close(lfd);
      throw NetError("cannot listen on " + peer_ + ": " + e);
    }
    if (listen(lfd, 1) != 0) {
      std::string e = errstr();
      close(lfd);
      throw NetError("listen() on " + peer_ + " failed: " + e);
    }
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        close(lfd);
        throw NetError("no peer connected to " + peer_ + " within " + std::to_string(opt.connect_timeout_s) +
                       " s");
      }
      pollfd p{lfd, POLLIN, 0};
      int rc = poll(&p, 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) continue;
      fd_ = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd_ >= 0) break;
      if (errno != EINTR && errno != ECONNABORTED) {
        std::string e = errstr();
        close(lfd);
        throw NetError("accept() on " + peer_ + " failed: " + e);
      }
    }
    close(lfd);
  } else {
    std::string last = "no address";
    int backoff_ms = 1;
    for (;;) {
      for (addrinfo* a = addrs.head; a != nullptr && fd_ < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
          last = errstr();
          continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          fd_ = fd;
        } else {
          last = errstr();
          close(fd);
        }
      }
      if (fd_ >= 0) break;
      if (Clock::now() >= deadline)
        throw NetError("could not connect to " + peer_ + " within " + std::to_string(opt.connect_timeout_s) +
                       " s (last error: " + last + ")");
      // Retry back-off while the listener starts (1, 2, 4, 5, 5 ... ms; a refused connect is cheap).
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = backoff_ms * 2 > 5 ? 5 : backoff_ms * 2;
    }
  }
  tune(fd_, opt.io_timeout_s);
}

NetIO::~NetIO() {
  if (fd_ >= 0) {
    try {
      flush();
    } catch (...) {  // a destructor must not throw; the peer sees the connection close
    }
    close(fd_);
  }
}

void NetIO::raw_send(const uint8_t* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd_, data, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) throw NetError("timed out sending to " + peer_);
      throw NetError("send to " + peer_ + " failed: " + errstr());
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

size_t NetIO::raw_recv(uint8_t* data, size_t max) {
  for (;;) {
    ssize_t r = ::recv(fd_, data, max, 0);
    if (r > 0) return static_cast<size_t>(r);
    if (r == 0) throw NetError("peer " + peer_ + " closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) throw NetError("timed out waiting for data from " + peer_);
    throw NetError("receive from " + peer_ + " failed: " + errstr());
  }
}

}  // namespace capc_gc
