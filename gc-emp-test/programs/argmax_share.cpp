// argmax_share — CaPC step 1b as a standalone 2PC program (see capc_circuits.h for the computation).
//
// Party 2 (QP, BOB) input file: C lines, its logit share a.
// Party 1 (AP, ALICE) input file: C lines of its share b, then C lines of its uniform mask m.
// Output: party 2 writes C lines w = onehot(argmax(a + b)) - m (mod 2^64). Party 1 learns nothing; if it is
// given an output file, that file is created empty once the protocol has finished.
#include <iostream>
#include <memory>

#include "capc_circuits.h"
#include "program_common.h"
#include "program_session.h"

namespace {

const char* kUsage =
    "usage: argmax_share <party 1|2> <port> <input file> [output file] [--host ADDR] [--classes C]\n"
    "                    [--connect-timeout S] [--io-timeout S]\n"
    "  party 1 = answering party (garbler, listens); input: C lines of b, then C lines of the mask m\n"
    "  party 2 = querying party (evaluator, connects); input: C lines of a; output: C lines w";

int body(int argc, char** argv) {
  using namespace capc_programs;
  CliArgs args = parse_cli(argc, argv, kUsage);
  std::vector<int64_t> in = read_int_file(args.input);
  size_t classes;
  if (args.party == 1) {
    if (in.empty() || in.size() % 2 != 0)
      throw UsageError{args.input + ": party 1 needs 2*C lines (C of b, then C of m), got " +
                       std::to_string(in.size())};
    classes = in.size() / 2;
  } else {
    if (in.empty()) throw UsageError{args.input + ": party 2 needs C lines of a, got none"};
    classes = in.size();
  }
  check_classes(args, classes);
  auto io = open_session(args, capc_gc::kProgArgmaxShare, classes);
  std::vector<int64_t> m;
  std::vector<int64_t> mine(in.begin(), in.begin() + static_cast<long>(classes));
  if (args.party == 1) m.assign(in.begin() + static_cast<long>(classes), in.end());
  std::vector<int64_t> w = argmax_share(args.party, classes, mine, m);
  gc::finalize_semi_honest();
  if (!args.output.empty()) write_int_file_atomic(args.output, args.party == 2 ? w : std::vector<int64_t>{});
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return capc_programs::run_program("argmax_share", body, argc, argv); }
