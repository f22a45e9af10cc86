// capc_circuits.h — CaPC's two 2PC computations, written once against the emp-shaped API (gc_compat.h) and
// used by the command-line programs and the Python module.
//
//  argmax_share (step 1b): QP (BOB) inputs a, AP (ALICE) inputs b and a uniform mask m, all int64[C].
//      v = a + b (mod 2^64, signed), k = argmax v (lowest index wins ties),
//      w = onehot(k) - m (mod 2^64) revealed to BOB only.  Nobody learns k or v.
//  noisy_argmax (step 3, Confident-GNMax of Papernot et al., "Scalable Private Learning with PATE",
//      ICLR 2018, Algorithm 1): QP (BOB) inputs W; PG (ALICE) inputs M, eta_G (C values), eta_T, T.
//      h = W + M; answered = max(h) + eta_T >= T, revealed to both;
//      if answered: label = argmax(h + eta_G) revealed to BOB only; otherwise nothing more is revealed.
// Cost: about 260 AND gates per class for argmax_share and 330 for noisy_argmax.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "gc_compat.h"

namespace capc_programs {

/// Bits of the class-index register: enough for C-1, plus a zero sign bit so reveals sign-extend to >= 0.
inline int index_bits(size_t classes) {
  int b = 1;
  while ((size_t{1} << b) < classes) ++b;
  return b + 1;
}

/// Index of the largest value (signed), lowest index on ties; a linear scan of C-1 comparisons.
inline gc::Integer argmax_index(const std::vector<gc::Integer>& v) {
  const int L = index_bits(v.size());
  gc::Integer best = v[0];
  gc::Integer idx(L, 0, gc::PUBLIC);
  for (size_t i = 1; i < v.size(); ++i) {
    gc::Bit gt = v[i] > best;  // strict: an equal later value does not replace the earlier one
    best = best.select(gt, v[i]);
    idx = idx.select(gt, gc::Integer(L, static_cast<int64_t>(i), gc::PUBLIC));
  }
  return idx;
}

inline gc::Integer max_value(const std::vector<gc::Integer>& v) {
  gc::Integer best = v[0];
  for (size_t i = 1; i < v.size(); ++i) best = best.select(v[i] > best, v[i]);
  return best;
}

/// Step 1b. party 2 (BOB, QP) passes a; party 1 (ALICE, AP) passes b and m. Returns w on BOB, {} on ALICE.
inline std::vector<int64_t> argmax_share(int party, size_t classes, const std::vector<int64_t>& a_or_b,
                                         const std::vector<int64_t>& m) {
  if (classes == 0) throw std::invalid_argument("argmax_share needs at least one class");
  const std::vector<int64_t> none(classes, 0);
  const bool bob = party == gc::BOB;
  // BOB's inputs first: his OT-extension message then leaves at once, saving a round.
  std::vector<gc::Integer> a = gc::input_integers(gc::BOB, 64, bob ? a_or_b : none);
  std::vector<int64_t> alice_in;
  if (!bob) {
    alice_in = a_or_b;
    alice_in.insert(alice_in.end(), m.begin(), m.end());
  } else {
    alice_in.assign(2 * classes, 0);
  }
  std::vector<gc::Integer> bm = gc::input_integers(gc::ALICE, 64, alice_in);
  std::vector<gc::Integer> v(classes);
  for (size_t i = 0; i < classes; ++i) v[i] = a[i] + bm[i];
  const gc::Integer idx = argmax_index(v);
  const int L = index_bits(classes);
  std::vector<int64_t> w;
  for (size_t i = 0; i < classes; ++i) {
    gc::Integer e(64, 0, gc::PUBLIC);
    e[0] = idx == gc::Integer(L, static_cast<int64_t>(i), gc::PUBLIC);
    gc::Integer wi = e - bm[classes + i];
    int64_t out = wi.reveal<int64_t>(gc::BOB);
    if (bob) w.push_back(out);
  }
  return w;
}

struct NoisyArgmaxResult {
  bool answered = false;
  int64_t label = -1;  ///< meaningful on BOB only, and only when answered
};

/// Step 3. BOB (QP) passes W; ALICE (PG) passes M, eta_G, eta_T, threshold.
inline NoisyArgmaxResult noisy_argmax(int party, size_t classes, const std::vector<int64_t>& w_or_m,
                                      const std::vector<int64_t>& eta_g, int64_t eta_t, int64_t threshold) {
  if (classes == 0) throw std::invalid_argument("noisy_argmax needs at least one class");
  const bool bob = party == gc::BOB;
  const std::vector<int64_t> none(classes, 0);
  std::vector<gc::Integer> W = gc::input_integers(gc::BOB, 64, bob ? w_or_m : none);
  std::vector<int64_t> alice_in(2 * classes + 2, 0);
  if (!bob) {
    for (size_t i = 0; i < classes; ++i) {
      alice_in[i] = w_or_m[i];
      alice_in[classes + i] = eta_g[i];
    }
    alice_in[2 * classes] = eta_t;
    alice_in[2 * classes + 1] = threshold;
  }
  std::vector<gc::Integer> in = gc::input_integers(gc::ALICE, 64, alice_in);
  std::vector<gc::Integer> h(classes), g(classes);
  for (size_t i = 0; i < classes; ++i) {
    h[i] = W[i] + in[i];
    g[i] = h[i] + in[classes + i];
  }
  gc::Bit answered_bit = (max_value(h) + in[2 * classes]) >= in[2 * classes + 1];
  const gc::Integer idx = argmax_index(g);
  // Defence in depth: the label register is forced to 0 unless answered, although it is never revealed
  // then.
  const gc::Integer label_reg = gc::Integer(idx.size(), 0, gc::PUBLIC).select(answered_bit, idx);
  NoisyArgmaxResult r;
  r.answered = answered_bit.reveal<bool>(gc::PUBLIC);
  if (r.answered) {
    int64_t l = label_reg.reveal<int64_t>(gc::BOB);
    if (bob) r.label = l;
  }
  return r;
}

}  // namespace capc_programs
