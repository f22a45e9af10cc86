// program_session.h — what the 2PC programs do between reading their input and computing: check
// the size, connect (ALICE listens, BOB connects), run the handshake (and agree on the public
// parameters), and set up the semi-honest backend, with capc's engine or a real EMP install (gc_compat.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gc_compat.h"
#include "program_common.h"

namespace capc_programs {

#ifdef CAPC_GC_BACKEND_EMP
using SessionIO = emp::NetIO;
#else
using SessionIO = capc_gc::NetIO;
#endif

/// Refuse a class count that disagrees with --classes or exceeds what the programs accept.
inline void check_classes(const CliArgs& args, size_t classes) {
  if (args.classes >= 0 && static_cast<size_t>(args.classes) != classes)
    throw UsageError{args.input + ": --classes " + std::to_string(args.classes) + " but the file holds " +
                     std::to_string(classes) + " classes"};
  if (classes > (size_t{1} << 20)) throw UsageError{"too many classes (at most 1048576)"};
}

/// Most values relu_share / maxpool_share accept (the per-round memory is bounded, the file is not).
constexpr size_t kMaxValues = size_t{1} << 26;

/// Refuse a value count outside 1..kMaxValues.
inline void check_values(const CliArgs& args, size_t n) {
  if (n > kMaxValues)
    throw UsageError{args.input + ": too many values (" + std::to_string(n) + ", at most " +
                     std::to_string(kMaxValues) + ")"};
}

/// Connect to the peer, agree on the program, the size (class or value count) and the public parameters,
/// and set up the 2PC backend.
inline std::unique_ptr<SessionIO> open_session(const CliArgs& args, uint32_t program, size_t classes,
                                               const std::vector<capc_gc::QueryParam>& params = {}) {
#ifdef CAPC_GC_BACKEND_EMP
  // emp-tool's NetIO: the server binds to all interfaces and cannot take a timeout (see README).
  auto io = std::make_unique<emp::NetIO>(args.party == 1 ? nullptr : args.host.c_str(), args.port, true);
  capc_gc::handshake(*io, args.party, program, static_cast<uint32_t>(classes));
  if (params.size() != 0)
    capc_gc::exchange_query_header(*io, program, static_cast<uint32_t>(classes), 0, capc_gc::program_name,
                                   capc_gc::program_size_unit(program), params);
  emp::setup_semi_honest(io.get(), args.party);
#else
  capc_gc::NetOptions opt;
  opt.listen = args.party == 1;
  opt.host = args.host;
  opt.port = args.port;
  opt.connect_timeout_s = args.connect_timeout;
  opt.io_timeout_s = args.io_timeout;
  auto io = std::make_unique<capc_gc::NetIO>(opt);
  capc_gc::block sid = capc_gc::handshake(*io, args.party, program, static_cast<uint32_t>(classes));
  if (params.size() != 0)
    capc_gc::exchange_query_header(*io, program, static_cast<uint32_t>(classes), 0, capc_gc::program_name,
                                   capc_gc::program_size_unit(program), params);
  capc_gc::setup_semi_honest(io.get(), args.party, sid);
#endif
  return io;
}

}  // namespace capc_programs
