// program_common.h — command line, input files and atomic output files shared by the 2PC programs.
//
// Command line (the original's shape):  <program> <party 1|2> <port> <input file> [output file]
//     [--host ADDR] [--classes C] [--connect-timeout S] [--io-timeout S]
// plus, for the programs that take them, [--window W] [--shift T] [--relu-after].
// Party 1 (ALICE, garbler: AP or PG) listens on --host:port (default 127.0.0.1); party 2 (BOB, evaluator:
// QP) connects to it. Files hold one signed 64-bit decimal integer per line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace capc_programs {

struct CliArgs {
  int party = 0;
  int port = 0;
  std::string input;
  std::string output;  // empty: no output file
  std::string host = "127.0.0.1";
  long classes = -1;   // -1: derive from the input file
  double connect_timeout = 30;
  double io_timeout = 120;
  long window = -1;    // -1: not given
  int shift = 0;
  bool relu_after = false;
};

/// Options a program accepts besides --host, --connect-timeout and --io-timeout (a bit mask).
enum CliOption : unsigned {
  kOptClasses = 1u << 0,
  kOptWindow = 1u << 1,
  kOptShift = 1u << 2,
  kOptReluAfter = 1u << 3,
};

/// Bad command line or input file: exit status 2.
struct UsageError {
  std::string message;
};

/// Parse the command line; an option outside `options` is reported as unknown.
CliArgs parse_cli(int argc, char** argv, const char* usage, unsigned options = kOptClasses);
/// Read one signed integer per line; blank lines only at the end; errors name the file and line.
std::vector<int64_t> read_int_file(const std::string& path);
/// Write one integer per line to path via a temporary file in the same directory and rename(2), so a
/// reader never sees a partial file.
void write_int_file_atomic(const std::string& path, const std::vector<int64_t>& values);
/// Run body(); map errors to a one-line message on stderr and exit status 2 (usage/input) or 1 (other).
int run_program(const char* name, int (*body)(int, char**), int argc, char** argv);

}  // namespace capc_programs
