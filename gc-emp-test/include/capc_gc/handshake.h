// handshake.h — the first bytes on every connection: magic, version, backend, program id, size, role, nonce.
//
// Both parties send their hello and then read the peer's, so the exchange costs one one-way latency. A peer
// that speaks another protocol version, runs the other 2PC backend (capc's engine vs an EMP build of the
// programs), runs another program, plays the same role, disagrees on the size (classes or values), or is this
// very process (a socket connected to itself) is rejected with ProtocolError naming both sides, instead of
// passing the hello and hanging mid-protocol. The version is read before the rest of the hello, so a peer
// whose hello has another length is refused at once rather than waited for.
// Templated on the channel type so that the same code runs over emp-tool's NetIO (emp backend).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "capc_gc/errors.h"
#include "capc_gc/hash.h"
#include "capc_gc/prg.h"

namespace capc_gc {

/// 2: one Delta per session (the IKNP sender's secret), garbler input labels from a seed both sides expand,
/// the evaluator's query header travels with its OT message, outputs decoded through arithmetic tables.
constexpr uint32_t kProtocolVersion = 2;
constexpr char kHelloMagic[8] = {'C', 'A', 'P', 'C', 'G', 'C', '\x01', '\0'};

/// The 2PC backend a party was built with; the two do not interoperate past the hello.
enum BackendId : uint32_t {
  kBackendCapc = 1,  ///< capc's own engine (this directory)
  kBackendEmp = 2,   ///< the same programs built against the EMP toolkit (-DCAPC_GC_BACKEND=emp)
};

inline const char* backend_name(uint32_t id) {
  switch (id) {
    case kBackendCapc: return "capc's garbled-circuit engine";
    case kBackendEmp: return "the EMP toolkit (emp-sh2pc, CAPC_GC_BACKEND=emp)";
    default: return "an unknown backend";
  }
}

#ifdef CAPC_GC_BACKEND_EMP
constexpr uint32_t kThisBackend = kBackendEmp;
#else
constexpr uint32_t kThisBackend = kBackendCapc;
#endif

/// Program ids carried in the hello and in per-query headers.
enum ProgramId : uint32_t {
  kProgSession = 1,       ///< a long-lived session (Python module); per-query headers follow
  kProgArgmaxShare = 2,   ///< step 1b
  kProgNoisyArgmax = 3,   ///< step 3 (Confident-GNMax)
  kProgBench = 4,         ///< benchmark / test circuits
  kProgReluShare = 5,     ///< ReLU on additive shares (HE + garbled-circuit hybrid)
  kProgMaxpoolShare = 6,  ///< max-pool on additive shares
};

inline const char* program_name(uint32_t id) {
  switch (id) {
    case kProgSession: return "session";
    case kProgArgmaxShare: return "argmax_share";
    case kProgNoisyArgmax: return "noisy_argmax";
    case kProgBench: return "bench";
    case kProgReluShare: return "relu_share";
    case kProgMaxpoolShare: return "maxpool_share";
    default: return "unknown";
  }
}

/// What a program's size parameter counts, for error messages.
inline const char* program_size_unit(uint32_t id) {
  return id == kProgReluShare || id == kProgMaxpoolShare ? "values" : "classes";
}

/// A public parameter of a query (window, shift, ...) that both parties must agree on.
struct QueryParam {
  const char* name;
  uint32_t value;
};

namespace detail {
/// Little-endian fixed-width fields of the handshake messages.
template <typename T>
inline void put_le(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
template <typename T>
inline T get_le(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}
inline void put_u32(uint8_t* p, uint32_t v) { put_le(p, v); }
inline uint32_t get_u32(const uint8_t* p) { return get_le<uint32_t>(p); }
inline void put_u64(uint8_t* p, uint64_t v) { put_le(p, v); }
inline uint64_t get_u64(const uint8_t* p) { return get_le<uint64_t>(p); }
}  // namespace detail

/// Exchange hellos; returns the session id SHA-256(nonce_ALICE || nonce_BOB) truncated to 128 bits.
/// party is 1 (ALICE) or 2 (BOB); size is a program parameter both sides must agree on (e.g. C). backend is
/// what this party claims to run (tests pass the other one to play an EMP-built peer).
template <typename IO>
block handshake(IO& io, int party, uint32_t program, uint32_t size, uint32_t backend = kThisBackend) {
  constexpr size_t kHead = 8 + 4;  // magic, version: read first, they decide the rest's layout
  constexpr size_t kLen = kHead + 4 + 4 + 4 + 4 + 16;
  uint8_t mine[kLen], theirs[kLen];
  std::memcpy(mine, kHelloMagic, 8);
  detail::put_u32(mine + 8, kProtocolVersion);
  detail::put_u32(mine + 12, backend);
  detail::put_u32(mine + 16, program);
  detail::put_u32(mine + 20, size);
  detail::put_u32(mine + 24, static_cast<uint32_t>(party));
  os_random_bytes(mine + 28, 16);
  io.send_data(mine, kLen);
  io.flush();
  io.recv_data(theirs, kHead);
  if (std::memcmp(theirs, kHelloMagic, 8) != 0)
    throw ProtocolError("the peer is not a capc garbled-circuit party (bad hello)");
  const uint32_t ver = detail::get_u32(theirs + 8);
  if (ver != kProtocolVersion)
    throw ProtocolError("protocol version mismatch: the peer speaks version " + std::to_string(ver) +
                        ", this party (" + backend_name(backend) + ") speaks version " +
                        std::to_string(kProtocolVersion) + "; build both parties from the same capc source");
  io.recv_data(theirs + kHead, kLen - kHead);
  if (std::memcmp(theirs + 28, mine + 28, 16) == 0)
    throw ProtocolError("connected to itself: the peer echoed this party's own hello");
  const uint32_t pback = detail::get_u32(theirs + 12), prog = detail::get_u32(theirs + 16);
  const uint32_t psize = detail::get_u32(theirs + 20), prole = detail::get_u32(theirs + 24);
  if (pback != backend)
    throw ProtocolError(std::string("backend mismatch: this party runs ") + backend_name(backend) +
                        ", the peer runs " + backend_name(pback) +
                        "; both parties must be built with the same CAPC_GC_BACKEND");
  if (prog != program)
    throw ProtocolError(std::string("program mismatch: this party runs ") + program_name(program) +
                        ", the peer runs " + program_name(prog));
  if (prole == static_cast<uint32_t>(party))
    throw ProtocolError("both parties claim to be party " + std::to_string(party) +
                        " (one must be 1 = garbler/ALICE, the other 2 = evaluator/BOB)");
  if (prole != 1 && prole != 2) throw ProtocolError("peer sent an invalid role " + std::to_string(prole));
  if (psize != size)
    throw ProtocolError("size mismatch: this party has " + std::to_string(size) + " " + program_size_unit(program) +
                        ", the peer has " + std::to_string(psize));
  Sha256 h;
  h.update("capc-gc session", 15);
  const uint8_t* alice = party == 1 ? mine : theirs;
  const uint8_t* bob = party == 1 ? theirs : mine;
  h.update(alice + 28, 16).update(bob + 28, 16);
  return h.finish_block();
}

/// Per-query header inside a session: operation code, size and sequence number must match on both sides,
/// and so must the operation's public parameters (sent in the same message, so they cost no extra round).
/// send_query_header only queues this party's header; check_query_header reads the peer's and compares.
/// The garbler sends, flushes and checks before it computes; the evaluator sends its header together with
/// its first protocol message (its OT extension) and checks the garbler's header before reading anything
/// else, so a query costs one flight less. The parameters are compared only once the operation matches,
/// because only then do both sides send the same number of them.
template <typename IO>
void send_query_header(IO& io, uint32_t op, uint32_t size, uint64_t seq, const std::vector<QueryParam>& params = {}) {
  const size_t len = 20 + 4 * params.size();
  std::vector<uint8_t> mine(len);
  std::memcpy(mine.data(), "CQRY", 4);
  detail::put_u32(mine.data() + 4, op);
  detail::put_u32(mine.data() + 8, size);
  detail::put_u64(mine.data() + 12, seq);
  size_t off = 20;
  for (const QueryParam& p : params) {
    detail::put_u32(mine.data() + off, p.value);
    off += 4;
  }
  io.send_data(mine.data(), len);
}

template <typename IO>
void check_query_header(IO& io, uint32_t op, uint32_t size, uint64_t seq, const char* (*op_name)(uint32_t),
                        const char* size_unit = "classes", const std::vector<QueryParam>& params = {}) {
  uint8_t theirs[20];
  io.recv_data(theirs, 20);
  if (std::memcmp(theirs, "CQRY", 4) != 0) throw ProtocolError("peer sent no query header (stream out of sync)");
  uint32_t pop = detail::get_u32(theirs + 4), psize = detail::get_u32(theirs + 8);
  uint64_t pseq = detail::get_u64(theirs + 12);
  if (pop != op)
    throw ProtocolError(std::string("query mismatch: this party called ") + op_name(op) + ", the peer called " +
                        op_name(pop));
  if (psize != size)
    throw ProtocolError("size mismatch in " + std::string(op_name(op)) + ": this party has " +
                        std::to_string(size) + " " + size_unit + ", the peer has " + std::to_string(psize));
  if (pseq != seq)
    throw ProtocolError("query sequence mismatch: this party is at query " + std::to_string(seq) +
                        ", the peer at " + std::to_string(pseq));
  if (params.empty()) return;
  std::vector<uint8_t> vals(4 * params.size());
  io.recv_data(vals.data(), vals.size());
  size_t off = 0;
  for (const QueryParam& p : params) {
    const uint32_t theirs_v = detail::get_u32(vals.data() + off);
    off += 4;
    if (theirs_v != p.value)
      throw ProtocolError("parameter mismatch in " + std::string(op_name(op)) + ": this party has " + p.name +
                          " = " + std::to_string(p.value) + ", the peer has " + p.name + " = " +
                          std::to_string(theirs_v));
  }
}

/// Both steps at once (send, flush, check): for the programs, which agree on their parameters once.
template <typename IO>
void exchange_query_header(IO& io, uint32_t op, uint32_t size, uint64_t seq, const char* (*op_name)(uint32_t),
                           const char* size_unit = "classes", const std::vector<QueryParam>& params = {}) {
  send_query_header(io, op, size, seq, params);
  io.flush();
  check_query_header(io, op, size, seq, op_name, size_unit, params);
}

}  // namespace capc_gc
