// relu_share — ReLU on additive shares as a standalone 2PC program (see capc_circuits.h for the computation).
//
// Party 2 (QP, BOB) input file: n lines, its share a.
// Party 1 (AP, ALICE) input file: n lines of its share b, then n lines of its mask m.
// Output: party 2 writes n lines y = round_shift(relu(a + b), shift) - m (mod 2^64). Party 1 learns nothing;
// if it is given an output file, that file is created empty once the protocol has finished.
// Both parties must pass the same --shift (checked after the handshake).
#include "capc_circuits.h"
#include "program_common.h"
#include "program_session.h"

namespace {

const char* kUsage =
    "usage: relu_share <party 1|2> <port> <input file> [output file] [--shift T] [--host ADDR]\n"
    "                  [--connect-timeout S] [--io-timeout S]\n"
    "  party 1 = answering party (garbler, listens); input: n lines of b, then n lines of the mask m\n"
    "  party 2 = querying party (evaluator, connects); input: n lines of a;\n"
    "            output: n lines y = round_shift(relu(a + b), T) - m";

int body(int argc, char** argv) {
  using namespace capc_programs;
  CliArgs args = parse_cli(argc, argv, kUsage, kOptShift);
  std::vector<int64_t> in = read_int_file(args.input);
  size_t n;
  if (args.party == 1) {
    if (in.empty() || in.size() % 2 != 0)
      throw UsageError{args.input + ": party 1 needs 2*n lines (n of b, then n of m), got " +
                       std::to_string(in.size())};
    n = in.size() / 2;
  } else {
    if (in.empty()) throw UsageError{args.input + ": party 2 needs n lines of a, got none"};
    n = in.size();
  }
  check_values(args, n);
  auto io = open_session(args, capc_gc::kProgReluShare, n, {{"shift", static_cast<uint32_t>(args.shift)}});
  std::vector<int64_t> mine(in.begin(), in.begin() + static_cast<long>(n)), m;
  if (args.party == 1) m.assign(in.begin() + static_cast<long>(n), in.end());
  std::vector<int64_t> y = relu_share(args.party, n, mine, m, args.shift);
  gc::finalize_semi_honest();
  if (!args.output.empty()) write_int_file_atomic(args.output, args.party == 2 ? y : std::vector<int64_t>{});
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return capc_programs::run_program("relu_share", body, argc, argv); }
