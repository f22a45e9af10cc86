// test_net — TCP transport and handshake failures: wrong role, wrong program, wrong size, the other
// backend (an EMP build), an older protocol version, a socket connected to itself, connect deadline, peer closing; query headers with mismatched parameters or
// operations; all must raise, none may hang.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.h"

using namespace capc_gc;

namespace {

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

NetOptions opts(bool listen, int port) {
  NetOptions o;
  o.listen = listen;
  o.port = port;
  o.connect_timeout_s = 5;
  o.io_timeout_s = 5;
  return o;
}

// Run a handshake over real TCP with the given (party, program, size) on each side; return which side threw.
struct Outcome {
  bool alice_threw = false, bob_threw = false;
  std::string alice_error, bob_error;
  block sid_a = zero_block(), sid_b = zero_block();
};

Outcome tcp_handshake(int pa, uint32_t proga, uint32_t sa, int pb, uint32_t progb, uint32_t sb,
                      uint32_t backend_a = kThisBackend, uint32_t backend_b = kThisBackend) {
  const int port = free_port();
  Outcome o;
  std::thread t([&] {
    try {
      NetIO io(opts(true, port));
      o.sid_a = handshake(io, pa, proga, sa, backend_a);
    } catch (const ProtocolError& e) {
      o.alice_threw = true;
      o.alice_error = e.what();
    }
  });
  try {
    NetIO io(opts(false, port));
    o.sid_b = handshake(io, pb, progb, sb, backend_b);
  } catch (const ProtocolError& e) {
    o.bob_threw = true;
    o.bob_error = e.what();
  }
  t.join();
  return o;
}

const char* test_op_name(uint32_t op) { return op == 7 ? "op7" : op == 8 ? "op8" : "unknown"; }

// Exchange query headers over a socketpair; returns the ProtocolError messages of ALICE and BOB ("" = none).
std::pair<std::string, std::string> header_pair(uint32_t op_a, const std::vector<QueryParam>& pa, uint32_t op_b,
                                                const std::vector<QueryParam>& pb) {
  std::string ea, eb;
  auto side = [](uint32_t op, const std::vector<QueryParam>& p, std::string& err) {
    return [op, &p, &err](IOChannel& io) {
      try {
        exchange_query_header(io, op, 16, 0, test_op_name, "values", p);
      } catch (const ProtocolError& e) {
        err = e.what();
      }
    };
  };
  test::run_pair(side(op_a, pa, ea), side(op_b, pb, eb));
  return {ea, eb};
}

}  // namespace

int main() {
  {  // the normal case: both derive the same session id
    Outcome o = tcp_handshake(ALICE, kProgArgmaxShare, 10, BOB, kProgArgmaxShare, 10);
    CHECK(!o.alice_threw && !o.bob_threw);
    CHECK(block_eq(o.sid_a, o.sid_b));
  }
  {  // both parties claim the same role
    Outcome o = tcp_handshake(BOB, kProgArgmaxShare, 10, BOB, kProgArgmaxShare, 10);
    CHECK(o.alice_threw && o.bob_threw);
  }
  {  // different programs
    Outcome o = tcp_handshake(ALICE, kProgArgmaxShare, 10, BOB, kProgNoisyArgmax, 10);
    CHECK(o.alice_threw && o.bob_threw);
  }
  {  // different class counts
    Outcome o = tcp_handshake(ALICE, kProgArgmaxShare, 10, BOB, kProgArgmaxShare, 11);
    CHECK(o.alice_threw && o.bob_threw);
  }
  {  // a capc-engine party and an EMP-built one are refused at the hello, both named, on both sides
    Outcome o = tcp_handshake(ALICE, kProgArgmaxShare, 10, BOB, kProgArgmaxShare, 10, kBackendCapc, kBackendEmp);
    CHECK(o.alice_threw && o.bob_threw);
    for (const std::string& e : {o.alice_error, o.bob_error}) {
      CHECK(e.find("backend mismatch") != std::string::npos);
      CHECK(e.find("capc's garbled-circuit engine") != std::string::npos);
      CHECK(e.find("EMP toolkit") != std::string::npos);
    }
    CHECK(o.alice_error.find("this party runs capc's") != std::string::npos);
    CHECK(o.bob_error.find("this party runs the EMP toolkit") != std::string::npos);
  }
  {  // a peer of protocol version 1 (its 40-byte hello) is refused at once, not waited for
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    uint8_t old[40] = {};
    std::memcpy(old, kHelloMagic, 8);
    old[8] = 1;  // version 1, little-endian
    old[12] = kProgArgmaxShare;
    old[16] = 10;
    old[20] = 2;
    old[24] = 0x5a;
    CHECK(::send(sv[1], old, sizeof old, 0) == static_cast<ssize_t>(sizeof old));
    std::string err;
    try {
      test::FdIO io(sv[0]);
      handshake(io, ALICE, kProgArgmaxShare, 10);
    } catch (const ProtocolError& e) {
      err = e.what();
    }
    CHECK(err.find("protocol version mismatch: the peer speaks version 1") != std::string::npos);
    CHECK(err.find("speaks version 2") != std::string::npos);
    close(sv[1]);
  }
  {  // the evaluator sends its header before reading the garbler's (checked at its next receive)
    std::string ea, eb;
    test::run_pair(
        [&](IOChannel& io) {
          try {
            exchange_query_header(io, 7, 16, 3, test_op_name, "values", {{"shift", 1}});
          } catch (const ProtocolError& e) {
            ea = e.what();
          }
        },
        [&](IOChannel& io) {
          try {
            send_query_header(io, 7, 16, 3, {{"shift", 2}});
            io.before_next_recv([&] { check_query_header(io, 7, 16, 3, test_op_name, "values", {{"shift", 2}}); });
            uint8_t b;
            io.recv_data(&b, 1);  // the check runs first and throws; this byte is never read
          } catch (const ProtocolError& e) {
            eb = e.what();
          }
        });
    CHECK(ea.find("shift = 1, the peer has shift = 2") != std::string::npos);
    CHECK(eb.find("shift = 2, the peer has shift = 1") != std::string::npos);
  }
  {  // query headers: equal parameters pass; a different value is named on both sides
    auto ok = header_pair(7, {{"window", 4}, {"shift", 8}}, 7, {{"window", 4}, {"shift", 8}});
    CHECK(ok.first.empty() && ok.second.empty());
    auto bad = header_pair(7, {{"window", 4}, {"shift", 8}}, 7, {{"window", 4}, {"shift", 0}});
    CHECK(bad.first.find("parameter mismatch in op7") != std::string::npos);
    CHECK(bad.first.find("shift = 8, the peer has shift = 0") != std::string::npos);
    CHECK(bad.second.find("shift = 0, the peer has shift = 8") != std::string::npos);
    // Other operations with other parameter counts: the operation mismatch is reported, nothing hangs.
    auto other = header_pair(7, {{"window", 4}, {"shift", 8}, {"relu_after", 1}}, 8, {});
    CHECK(other.first.find("query mismatch") != std::string::npos);
    CHECK(other.second.find("query mismatch") != std::string::npos);
  }
  {  // a stream that loops back to its own sender is detected
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    struct Loop : public IOChannel {
      void raw_send(const uint8_t* d, size_t n) override { buf.insert(buf.end(), d, d + n); }
      size_t raw_recv(uint8_t* d, size_t max) override {
        if (buf.empty()) throw NetError("empty");
        size_t n = std::min(max, buf.size());
        std::memcpy(d, buf.data(), n);
        buf.erase(buf.begin(), buf.begin() + static_cast<long>(n));
        return n;
      }
      std::vector<uint8_t> buf;
    } loop;
    test::check_throws<ProtocolError>([&] { handshake(loop, ALICE, kProgArgmaxShare, 10); }, "self-connection");
    close(sv[0]);
    close(sv[1]);
  }
  {  // nobody listening: the connect deadline expires with NetError
    NetOptions o = opts(false, free_port());
    o.connect_timeout_s = 0.3;
    auto t0 = std::chrono::steady_clock::now();
    test::check_throws<NetError>([&] { NetIO io(o); }, "connect deadline");
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(s < 3);
  }
  {  // nobody connecting: accept deadline
    NetOptions o = opts(true, free_port());
    o.connect_timeout_s = 0.3;
    test::check_throws<NetError>([&] { NetIO io(o); }, "accept deadline");
  }
  {  // a peer that connects and says nothing: the I/O timeout fires instead of hanging
    const int port = free_port();
    std::thread t([&] {
      NetOptions o = opts(true, port);
      o.io_timeout_s = 0.3;
      test::check_throws<NetError>([&] {
        NetIO io(o);
        handshake(io, ALICE, kProgArgmaxShare, 1);
      }, "silent peer");
    });
    {
      NetIO io(opts(false, port));
      t.join();  // the listener gave up; then we close
    }
  }
  {  // a peer that closes mid-protocol
    const int port = free_port();
    std::thread t([&] {
      test::check_throws<NetError>([&] {
        NetIO io(opts(true, port));
        uint8_t b[64];
        io.recv_data(b, sizeof b);
      }, "peer closed");
    });
    { NetIO io(opts(false, port)); }
    t.join();
  }
  {  // bad port and host
    test::check_throws<InputError>([&] { NetIO io(opts(false, 0)); }, "port 0");
    NetOptions o = opts(false, 5000);
    o.host = "no-such-host.invalid";
    o.connect_timeout_s = 0.2;
    test::check_throws<NetError>([&] { NetIO io(o); }, "unresolvable host");
  }
  return test::finish("test_net");
}
