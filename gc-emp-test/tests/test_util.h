// test_util.h — a minimal check macro and an in-process two-party harness over a socketpair.
#pragma once
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <thread>

#include "capc_gc/capc_gc.h"

namespace test {

inline int& failures() {
  static int f = 0;
  return f;
}

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++test::failures();                                                           \
    }                                                                               \
  } while (0)

#define CHECK_EQ(a, b)                                                                               \
  do {                                                                                               \
    auto va_ = (a);                                                                                  \
    auto vb_ = (b);                                                                                  \
    if (!(va_ == vb_)) {                                                                             \
      std::fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, \
                   #b, (long long)va_, (long long)vb_);                                              \
      ++test::failures();                                                                            \
    }                                                                                                \
  } while (0)

template <typename E, typename F>
void check_throws(F f, const char* what) {
  try {
    f();
  } catch (const E&) {
    return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: threw the wrong exception: %s\n", what, e.what());
    ++failures();
    return;
  }
  std::fprintf(stderr, "%s: did not throw\n", what);
  ++failures();
}

inline int finish(const char* name) {
  if (failures() == 0) {
    std::printf("%s: all checks passed\n", name);
    return 0;
  }
  std::printf("%s: %d check(s) failed\n", name, failures());
  return 1;
}

/// IOChannel over a file descriptor (one end of a socketpair).
class FdIO : public capc_gc::IOChannel {
 public:
  explicit FdIO(int fd) : fd_(fd) {}
  ~FdIO() override {
    try {
      flush();
    } catch (...) {
    }
    close(fd_);
  }

 protected:
  void raw_send(const uint8_t* d, size_t n) override {
    while (n > 0) {
      ssize_t w = ::send(fd_, d, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw capc_gc::NetError("send failed");
      }
      d += w;
      n -= static_cast<size_t>(w);
    }
  }
  size_t raw_recv(uint8_t* d, size_t max) override {
    for (;;) {
      ssize_t r = ::recv(fd_, d, max, 0);
      if (r > 0) return static_cast<size_t>(r);
      if (r == 0) throw capc_gc::NetError("peer closed the connection");
      if (errno != EINTR) throw capc_gc::NetError("recv failed");
    }
  }

 private:
  int fd_;
};

/// Run alice(io) and bob(io) in two threads connected by a socketpair; rethrow the first failure.
inline void run_pair(const std::function<void(capc_gc::IOChannel&)>& alice,
                     const std::function<void(capc_gc::IOChannel&)>& bob) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) std::abort();
  std::exception_ptr ea, eb;
  std::thread ta([&] {
    try {
      FdIO io(sv[0]);
      alice(io);
    } catch (...) {
      ea = std::current_exception();
    }
  });
  try {
    FdIO io(sv[1]);
    bob(io);
  } catch (...) {
    eb = std::current_exception();
  }
  ta.join();
  if (ea) std::rethrow_exception(ea);
  if (eb) std::rethrow_exception(eb);
}

/// Run the same circuit function on both sides, with a handshake and a fresh party per side.
inline void run_circuit(const std::function<void(int party)>& circuit, uint32_t program = capc_gc::kProgBench) {
  auto side = [&](int party) {
    return [&, party](capc_gc::IOChannel& io) {
      capc_gc::block sid = capc_gc::handshake(io, party, program, 0);
      capc_gc::setup_semi_honest(&io, party, sid);
      circuit(party);
      capc_gc::finalize_semi_honest();
    };
  };
  run_pair(side(capc_gc::ALICE), side(capc_gc::BOB));
}

}  // namespace test
