// noisy_argmax — CaPC step 3 (Confident-GNMax) as a standalone 2PC program (see capc_circuits.h).
//
// Party 2 (QP, BOB) input file: C lines of W (its aggregated vote shares).
// Party 1 (PG, ALICE) input file: C lines of M, C lines of eta_G, 1 line eta_T, 1 line threshold (all in vote
// units, already scaled).
// Output: party 2 writes two lines, `answered` (0/1) and the label (or -1 when not answered);
// party 1 writes one line, `answered`.
#include <iostream>
#include <memory>

#include "capc_circuits.h"
#include "program_common.h"
#include "program_session.h"

namespace {

const char* kUsage =
    "usage: noisy_argmax <party 1|2> <port> <input file> [output file] [--host ADDR] [--classes C]\n"
    "                    [--connect-timeout S] [--io-timeout S]\n"
    "  party 1 = privacy guardian (garbler, listens); input: C lines M, C lines eta_G, eta_T, threshold\n"
    "  party 2 = querying party (evaluator, connects); input: C lines W; output: answered, label or -1";

int body(int argc, char** argv) {
  using namespace capc_programs;
  CliArgs args = parse_cli(argc, argv, kUsage);
  std::vector<int64_t> in = read_int_file(args.input);
  size_t classes;
  if (args.party == 1) {
    if (in.size() < 4 || in.size() % 2 != 0)
      throw UsageError{args.input + ": party 1 needs 2*C+2 lines (C of M, C of eta_G, eta_T, threshold), got " +
                       std::to_string(in.size())};
    classes = (in.size() - 2) / 2;
  } else {
    if (in.empty()) throw UsageError{args.input + ": party 2 needs C lines of W, got none"};
    classes = in.size();
  }
  check_classes(args, classes);
  auto io = open_session(args, capc_gc::kProgNoisyArgmax, classes);
  const auto C = static_cast<long>(classes);
  std::vector<int64_t> first(in.begin(), in.begin() + C), eta_g;
  int64_t eta_t = 0, threshold = 0;
  if (args.party == 1) {
    eta_g.assign(in.begin() + C, in.begin() + 2 * C);
    eta_t = in[static_cast<size_t>(2 * C)];
    threshold = in[static_cast<size_t>(2 * C + 1)];
  }
  NoisyArgmaxResult r = noisy_argmax(args.party, classes, first, eta_g, eta_t, threshold);
  gc::finalize_semi_honest();
  if (!args.output.empty()) {
    if (args.party == 2)
      write_int_file_atomic(args.output, {r.answered ? 1 : 0, r.answered ? r.label : -1});
    else
      write_int_file_atomic(args.output, {r.answered ? 1 : 0});
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return capc_programs::run_program("noisy_argmax", body, argc, argv); }
