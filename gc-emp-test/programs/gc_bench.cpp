// gc_bench — AND-gate throughput of the engine between two processes: garble and evaluate n AND gates.
// usage: gc_bench <party 1|2> <port> <n_and_gates> [--host ADDR]
// Prints one line to stdout: and_gates seconds gates_per_second bytes_sent bytes_received.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "capc_gc/capc_gc.h"
#include "program_common.h"

namespace {

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
  Bit x(true, capc_gc::ALICE), y(true, capc_gc::BOB);
  y.reveal<bool>(capc_gc::PUBLIC);  // synchronise (base OTs done) before timing
  auto t0 = std::chrono::steady_clock::now();
  // Four independent chains so consecutive gates do not depend on each other's result.
  Bit a = x, b = y, c = x ^ y, d = !x;
  for (long long i = 0; i < n / 4; ++i) {
    a = a & b;
    b = b & c;
    c = c & d;
    d = d & a;
  }
  bool v = (a ^ b ^ c ^ d).reveal<bool>(capc_gc::PUBLIC);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  (void)v;
  std::printf("%lld %.6f %.0f %llu %llu\n", (n / 4) * 4, s, static_cast<double>((n / 4) * 4) / s,
              static_cast<unsigned long long>(io->bytes_sent()), static_cast<unsigned long long>(io->bytes_received()));
  capc_gc::finalize_semi_honest();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return capc_programs::run_program("gc_bench", body, argc, argv); }
