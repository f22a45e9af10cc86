// gc_compat.h — the few names the 2PC programs use, from capc's engine (default) or from a real
// emp-sh2pc install (-DCAPC_GC_BACKEND=emp, which defines CAPC_GC_BACKEND_EMP).
//
// The portable circuits use only: Integer(len, value, party), Integer::size, Integer::bits, Bit(value, PUBLIC),
// Bit ^ & !, + - >=, Integer::select, operator[], reveal<T>(ALICE|BOB|PUBLIC), NetIO, setup_semi_honest,
// finalize_semi_honest, and input_integers() / reveal_integers(), which with emp fall back to one Integer
// per value. reveal_minus_mask() is capc's output table on capc's engine and an in-circuit subtraction
// (the mask an input of ALICE) with emp.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
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

namespace capc_programs {

/// y_j = x_j - m_j (mod 2^out_bits) revealed to BOB only, where x_j is r_j extended to out_bits (sign-extended
/// if is_signed, else zero-extended; truncated if longer). ALICE passes m, BOB gets y (empty on ALICE).
/// This version subtracts in the circuit, with m an input of ALICE: out_bits AND gates and input bits per
/// value. It is what the EMP build runs; capc's engine uses reveal_minus_mask below.
inline std::vector<int64_t> reveal_minus_mask_circuit(int party, const std::vector<gc::Integer>& r, bool is_signed,
                                                      const std::vector<int64_t>& m, int out_bits) {
  const bool alice = party == gc::ALICE;
  if (alice && m.size() != r.size())
    throw std::invalid_argument("reveal_minus_mask: " + std::to_string(r.size()) + " values but " +
                                std::to_string(m.size()) + " masks");
  std::vector<gc::Integer> mk = gc::input_integers(gc::ALICE, out_bits, alice ? m : std::vector<int64_t>(r.size(), 0));
  std::vector<gc::Integer> out;
  out.reserve(r.size());
  for (size_t j = 0; j < r.size(); ++j) {
    gc::Integer x = r[j];
    if (x.size() > out_bits) x.bits.resize(static_cast<size_t>(out_bits));
    while (x.size() < out_bits) x.bits.push_back(is_signed ? x[x.size() - 1] : gc::Bit(false, gc::PUBLIC));
    out.push_back(x - mk[j]);
  }
  std::vector<int64_t> y = gc::reveal_integers(gc::BOB, out);
  if (party != gc::BOB) y.clear();
  return y;
}

#ifdef CAPC_GC_BACKEND_EMP
inline std::vector<int64_t> reveal_minus_mask(int party, const std::vector<gc::Integer>& r, bool is_signed,
                                              const std::vector<int64_t>& m, int out_bits) {
  return reveal_minus_mask_circuit(party, r, is_signed, m, out_bits);
}
#else
/// The same result through the engine's output tables (SemiHonestParty::reveal_weighted): bit k of r_j has
/// weight 2^k (the top bit -2^(L-1) if signed); no AND gate, and m is not a circuit input.
inline std::vector<int64_t> reveal_minus_mask(int party, const std::vector<gc::Integer>& r, bool is_signed,
                                              const std::vector<int64_t>& m, int out_bits) {
  if (r.empty()) return {};
  const size_t L = static_cast<size_t>(r[0].size());
  if (L == 0 || L > 64) throw std::invalid_argument("reveal_minus_mask: values must have 1..64 bits");
  if (party == gc::ALICE && m.size() != r.size())
    throw std::invalid_argument("reveal_minus_mask: " + std::to_string(r.size()) + " values but " +
                                std::to_string(m.size()) + " masks");
  std::vector<uint64_t> weights(L);
  for (size_t k = 0; k < L; ++k) weights[k] = uint64_t{1} << k;
  if (is_signed) weights[L - 1] = uint64_t{0} - weights[L - 1];
  std::vector<gc::block> labels;
  labels.reserve(r.size() * L);
  for (const gc::Integer& x : r) {
    if (static_cast<size_t>(x.size()) != L) throw std::invalid_argument("reveal_minus_mask: values of different lengths");
    for (const gc::Bit& b : x.bits) labels.push_back(b.label);
  }
  std::vector<int64_t> y(party == gc::BOB ? r.size() : 0);
  gc::backend().reveal_weighted(labels.data(), r.size(), weights.data(), L, out_bits,
                                party == gc::ALICE ? m.data() : nullptr, party == gc::BOB ? y.data() : nullptr);
  return y;
}
#endif

}  // namespace capc_programs
