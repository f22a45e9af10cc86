// maxpool_share — max-pool on additive shares as a standalone 2PC program (see capc_circuits.h).
//
// Windows are consecutive groups of --window W values (the caller lays them out); n = k*W.
// Party 2 (QP, BOB) input file: n lines, its share a.
// Party 1 (AP, ALICE) input file: n lines of its share b, then k lines of its mask m.
// Output: party 2 writes k lines y_j = round_shift(max(a + b over window j), shift) - m_j (mod 2^64), with
// --relu-after the maximum is relu'd first. Party 1 learns nothing (its output file is created empty).
// Both parties must pass the same --window, --shift and --relu-after (checked after the handshake).
#include "capc_circuits.h"
#include "program_common.h"
#include "program_session.h"

namespace {

const char* kUsage =
    "usage: maxpool_share <party 1|2> <port> <input file> [output file] --window W [--shift T] [--relu-after]\n"
    "                     [--host ADDR] [--connect-timeout S] [--io-timeout S]\n"
    "  windows are consecutive groups of W values; n = k*W\n"
    "  party 1 = answering party (garbler, listens); input: n lines of b, then k lines of the mask m\n"
    "  party 2 = querying party (evaluator, connects); input: n lines of a;\n"
    "            output: k lines y = round_shift(max over the window of a + b, T) - m";

int body(int argc, char** argv) {
  using namespace capc_programs;
  CliArgs args = parse_cli(argc, argv, kUsage, kOptWindow | kOptShift | kOptReluAfter);
  if (args.window < 0) throw UsageError{std::string("--window W is required\n") + kUsage};
  const auto w = static_cast<size_t>(args.window);
  std::vector<int64_t> in = read_int_file(args.input);
  size_t n;
  if (args.party == 1) {
    if (in.empty() || in.size() % (w + 1) != 0)
      throw UsageError{args.input + ": party 1 needs (W+1)*k lines (k*W of b, then k of m) with W = " +
                       std::to_string(w) + ", got " + std::to_string(in.size())};
    n = in.size() / (w + 1) * w;
  } else {
    if (in.empty() || in.size() % w != 0)
      throw UsageError{args.input + ": party 2 needs k*W lines of a with W = " + std::to_string(w) + ", got " +
                       std::to_string(in.size())};
    n = in.size();
  }
  check_values(args, n);
  auto io = open_session(args, capc_gc::kProgMaxpoolShare, n,
                         {{"window", static_cast<uint32_t>(w)},
                          {"shift", static_cast<uint32_t>(args.shift)},
                          {"relu_after", args.relu_after ? 1u : 0u}});
  std::vector<int64_t> mine(in.begin(), in.begin() + static_cast<long>(n)), m;
  if (args.party == 1) m.assign(in.begin() + static_cast<long>(n), in.end());
  std::vector<int64_t> y = maxpool_share(args.party, n, w, mine, m, args.shift, args.relu_after);
  gc::finalize_semi_honest();
  if (!args.output.empty()) write_int_file_atomic(args.output, args.party == 2 ? y : std::vector<int64_t>{});
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return capc_programs::run_program("maxpool_share", body, argc, argv); }
