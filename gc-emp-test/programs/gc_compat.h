// gc_compat.h — the few names the 2PC programs use, from capc's engine (default) or from a real
// emp-sh2pc install (-DCAPC_GC_BACKEND=emp, which defines CAPC_GC_BACKEND_EMP).
//
// The programs use only: Integer(len, value, party), Integer::size, Bit(value, PUBLIC), Bit ^ & !,
// + - == > >=, Integer::select, operator[], reveal<T>(ALICE|BOB|PUBLIC), NetIO, setup_semi_honest,
// finalize_semi_honest, and input_integers() / reveal_integers(), which with emp fall back to one
// Integer per value.
#pragma once
#include <cstdint>
#include <vector>

#include "capc_gc/handshake.h"

#ifdef CAPC_GC_BACKEND_EMP
#include <emp-sh2pc/emp-sh2pc.h>
namespace gc = emp;
namespace emp {
inline std::vector<Integer> input_integers(int party, int length, const std::vector<int64_t>& values) {
  std::vector<Integer> out;
  out.reserve(values.size());
  for (int64_t v : values) out.emplace_back(length, v, party);
  return out;
}
inline std::vector<int64_t> reveal_integers(int party, const std::vector<Integer>& values) {
  std::vector<int64_t> out;
  out.reserve(values.size());
  for (const Integer& v : values) out.push_back(v.reveal<int64_t>(party));
  return out;
}
}  // namespace emp
#else
#include "capc_gc/capc_gc.h"
namespace gc = capc_gc;
#endif
