// program_common.cpp — see program_common.h.
#include "program_common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>

#ifndef CAPC_GC_BACKEND_EMP
#include "capc_gc/errors.h"
#endif

namespace capc_programs {

namespace {

bool parse_long(const std::string& s, long long& out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') return false;
  out = v;
  return true;
}

bool parse_double(const std::string& s, double& out) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end == s.c_str() || *end != '\0' || !(v > 0) || v > 1e6) return false;
  out = v;
  return true;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

CliArgs parse_cli(int argc, char** argv, const char* usage, unsigned options) {
  CliArgs a;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* flag) -> std::string {
      std::string f = flag;
      if (arg.size() > f.size() + 1 && arg.compare(0, f.size() + 1, f + "=") == 0) return arg.substr(f.size() + 1);
      if (i + 1 >= argc) throw UsageError{f + " needs a value\n" + usage};
      return argv[++i];
    };
    auto is = [&](const char* flag) {
      std::string f = flag;
      return arg == f || arg.compare(0, f.size() + 1, f + "=") == 0;
    };
    if (arg == "-h" || arg == "--help") throw UsageError{usage};
    auto allowed = [&](unsigned opt) { return (options & opt) != 0; };
    if (is("--host")) {
      a.host = value("--host");
      if (a.host.empty()) throw UsageError{"--host must not be empty"};
    } else if (allowed(kOptClasses) && is("--classes")) {
      long long c;
      std::string v = value("--classes");
      if (!parse_long(v, c) || c < 1 || c > (1 << 20))
        throw UsageError{"--classes must be an integer in 1..1048576, got '" + v + "'"};
      a.classes = static_cast<long>(c);
    } else if (allowed(kOptWindow) && is("--window")) {
      long long w;
      std::string v = value("--window");
      if (!parse_long(v, w) || w < 1 || w > (1 << 26))
        throw UsageError{"--window must be an integer in 1..67108864, got '" + v + "'"};
      a.window = static_cast<long>(w);
    } else if (allowed(kOptShift) && is("--shift")) {
      long long t;
      std::string v = value("--shift");
      if (!parse_long(v, t) || t < 0 || t > 62) throw UsageError{"--shift must be an integer in 0..62, got '" + v + "'"};
      a.shift = static_cast<int>(t);
    } else if (allowed(kOptReluAfter) && arg == "--relu-after") {
      a.relu_after = true;
    } else if (is("--connect-timeout")) {
      std::string v = value("--connect-timeout");
      if (!parse_double(v, a.connect_timeout)) throw UsageError{"--connect-timeout must be a positive number of seconds"};
    } else if (is("--io-timeout")) {
      std::string v = value("--io-timeout");
      if (!parse_double(v, a.io_timeout)) throw UsageError{"--io-timeout must be a positive number of seconds"};
    } else if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      throw UsageError{"unknown option '" + arg + "'\n" + usage};
    } else {
      pos.push_back(arg);
    }
  }
  if (pos.size() < 3 || pos.size() > 4) throw UsageError{usage};
  long long v;
  if (!parse_long(pos[0], v) || (v != 1 && v != 2))
    throw UsageError{"party must be 1 (ALICE, garbler) or 2 (BOB, evaluator), got '" + pos[0] + "'"};
  a.party = static_cast<int>(v);
  if (!parse_long(pos[1], v) || v < 1 || v > 65535) throw UsageError{"port must be in 1..65535, got '" + pos[1] + "'"};
  a.port = static_cast<int>(v);
  a.input = pos[2];
  if (pos.size() == 4) {
    a.output = pos[3];
    // Fail before the protocol runs, not after, when the output cannot be written.
    std::string dir = a.output.find('/') == std::string::npos ? "." : a.output.substr(0, a.output.rfind('/'));
    if (dir.empty()) dir = "/";
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || access(dir.c_str(), W_OK) != 0)
      throw UsageError{"output directory '" + dir + "' does not exist or is not writable"};
  }
  return a;
}

std::vector<int64_t> read_int_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError{"cannot open input file '" + path + "': " + std::strerror(errno)};
  std::vector<int64_t> out;
  std::string line;
  size_t lineno = 0, blank_at = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string t = trim(line);
    if (t.empty()) {
      if (blank_at == 0) blank_at = lineno;
      continue;
    }
    if (blank_at != 0)
      throw UsageError{path + ":" + std::to_string(blank_at) + ": blank line inside the input (one integer per line)"};
    long long v;
    if (!parse_long(t, v))
      throw UsageError{path + ":" + std::to_string(lineno) + ": not a signed 64-bit integer: '" +
                       (t.size() > 40 ? t.substr(0, 40) + "..." : t) + "'"};
    out.push_back(static_cast<int64_t>(v));
  }
  if (in.bad()) throw UsageError{"error reading input file '" + path + "'"};
  return out;
}

void write_int_file_atomic(const std::string& path, const std::vector<int64_t>& values) {
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  if (fd < 0) throw UsageError{"cannot create output file next to '" + path + "': " + std::strerror(errno)};
  std::ostringstream os;
  for (int64_t v : values) os << v << '\n';
  const std::string data = os.str();
  size_t off = 0;
  bool ok = true;
  while (off < data.size()) {
    ssize_t w = write(fd, data.data() + off, data.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    off += static_cast<size_t>(w);
  }
  ok = ok && fsync(fd) == 0;
  ok = (close(fd) == 0) && ok;
  if (!ok || std::rename(name.data(), path.c_str()) != 0) {
    std::string e = std::strerror(errno);
    unlink(name.data());
    throw UsageError{"cannot write output file '" + path + "': " + e};
  }
}

int run_program(const char* name, int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << name << ": error: " << e.message << std::endl;
    return 2;
#ifndef CAPC_GC_BACKEND_EMP
  } catch (const capc_gc::InputError& e) {
    std::cerr << name << ": error: " << e.what() << std::endl;
    return 2;
#endif
  } catch (const std::exception& e) {
    std::cerr << name << ": error: " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace capc_programs
