// gc_bench — AND-gate throughput of the engine between two processes: garble and evaluate n AND gates.
// usage: gc_bench <party 1|2> <port> <n_and_gates> [--host ADDR]
// Prints one line to stdout:
//   and_gates seconds gates_per_second bytes_sent bytes_received single_gates single_seconds
// The first five fields are for n gates in layers of 1024 independent gates (Backend::and_n, as the
// layer circuits run them); the last two for n/8 gates one at a time through Bit (four dependent chains,
// as the Integer API runs them).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "capc_gc/capc_gc.h"
#include "program_common.h"

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int body(int argc, char** argv) {
  using namespace capc_programs;
  const char* usage = "usage: gc_bench <party 1|2> <port> <n_and_gates> [--host ADDR]";
  CliArgs args = parse_cli(argc, argv, usage);
  long long n = std::stoll(args.input);
  if (n <= 0) throw UsageError{"n_and_gates must be positive"};
  capc_gc::NetOptions opt;
  opt.listen = args.party == 1;
  opt.host = args.host;
  opt.port = args.port;
  auto io = std::make_unique<capc_gc::NetIO>(opt);
  capc_gc::block sid = capc_gc::handshake(*io, args.party, capc_gc::kProgBench, 0);
  capc_gc::setup_semi_honest(io.get(), args.party, sid);
  using capc_gc::Bit;
  capc_gc::Backend& be = capc_gc::backend();
  Bit x(true, capc_gc::ALICE), y(true, capc_gc::BOB);
  y.reveal<bool>(capc_gc::PUBLIC);  // synchronise (base OTs done) before timing

  // Batched: a layer of W independent gates, each layer feeding the next.
  constexpr size_t W = 1024;
  std::vector<capc_gc::block> a(W, x.label), b(W, y.label);
  for (size_t i = 0; i < W; i += 2) b[i] = be.not_gate(b[i]);
  const long long layers = (n + static_cast<long long>(W) - 1) / static_cast<long long>(W);
  const uint64_t sent0 = io->bytes_sent(), recv0 = io->bytes_received();
  auto t0 = Clock::now();
  for (long long l = 0; l < layers; ++l) {
    be.and_n(a.data(), b.data(), a.data(), W);
    std::swap(a, b);
  }
  bool v = Bit(a[0]).reveal<bool>(capc_gc::PUBLIC);
  const double s = since(t0);
  const long long gates = layers * static_cast<long long>(W);
  const uint64_t sent = io->bytes_sent() - sent0, recv = io->bytes_received() - recv0;

  // One gate at a time: four independent chains so consecutive gates do not depend on each other.
  const long long single = std::max<long long>(4, n / 8 / 4 * 4);
  t0 = Clock::now();
  Bit p = x, q = y, r = x ^ y, u = !x;
  for (long long i = 0; i < single / 4; ++i) {
    p = p & q;
    q = q & r;
    r = r & u;
    u = u & p;
  }
  v ^= (p ^ q ^ r ^ u).reveal<bool>(capc_gc::PUBLIC);
  const double s1 = since(t0);
  (void)v;
  std::printf("%lld %.6f %.0f %llu %llu %lld %.6f\n", gates, s, static_cast<double>(gates) / s,
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(recv), single, s1);
  capc_gc::finalize_semi_honest();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return capc_programs::run_program("gc_bench", body, argc, argv); }
