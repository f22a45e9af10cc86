// program_session.h — what both 2PC programs do between reading their input and computing: check
// the class count, connect (ALICE listens, BOB connects), run the handshake and set up the
// semi-honest backend, with capc's engine or a real EMP install (gc_compat.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

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

/// Connect to the peer, agree on the program and class count, and set up the 2PC backend.
inline std::unique_ptr<SessionIO> open_session(const CliArgs& args, uint32_t program, size_t classes) {
#ifdef CAPC_GC_BACKEND_EMP
  // emp-tool's NetIO: the server binds to all interfaces and cannot take a timeout (see README).
  auto io = std::make_unique<emp::NetIO>(args.party == 1 ? nullptr : args.host.c_str(), args.port, true);
  capc_gc::handshake(*io, args.party, program, static_cast<uint32_t>(classes));
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
  capc_gc::setup_semi_honest(io.get(), args.party, sid);
#endif
  return io;
}

}  // namespace capc_programs
