// capc_circuits.h — CaPC's 2PC computations, written once against the emp-shaped API (gc_compat.h) and used
// by the command-line programs and the Python module.
//
//  argmax_share (step 1b): QP (BOB) inputs a, AP (ALICE) inputs b and a uniform mask m, all int64[C].
//      v = a + b (mod 2^64, signed), k = argmax v (lowest index wins ties),
//      w = onehot(k) - m (mod 2^64) revealed to BOB only.  Nobody learns k or v.
//  noisy_argmax (step 3, Confident-GNMax of Papernot et al., "Scalable Private Learning with PATE",
//      ICLR 2018, Algorithm 1): QP (BOB) inputs W; PG (ALICE) inputs M, eta_G (C values), eta_T, T.
//      h = W + M; answered = max(h) + eta_T >= T, revealed to both;
//      if answered: label = argmax(h + eta_G) revealed to BOB only; otherwise nothing more is revealed.
// Cost: about 260 AND gates per class for argmax_share and 330 for noisy_argmax.
//
// Non-linear layers of the HE + garbled-circuit hybrid (QP = BOB, AP = ALICE; see pool_share below):
//  relu_share: QP inputs a[n]; AP inputs b[n] and a mask m[n]. v = a + b (mod 2^64, signed);
//      y_i = round_shift(relu(v_i), t) - m_i (mod 2^64), revealed to BOB only.
//  maxpool_share: QP inputs a[n]; AP inputs b[n] and m[k]; public window w with n = k*w (window j is
//      v[j*w .. j*w+w-1]); y_j = round_shift(max(window j), t) - m_j, optionally relu'd before the shift.
//  round_shift(x, t) = floor((x + 2^(t-1)) / 2^t) for a public t in 1..62 (round to nearest, halves up), x when
//      t = 0. It is exact integer arithmetic on the 64-bit x, so |round_shift(x, t) - x/2^t| <= 1/2; when the
//      caller's shares carry the usual +-1 of share rounding, the result is within 1/2 + 2^-t of the exact
//      rescale of the exact value.
// AND gates (counted with Backend::and_gates() in test_circuits, exactly):
//      relu_share          189 per element (63 add a+b, 63 relu, 63 subtract m), + (64 - t) with a shift t >= 1;
//      maxpool_share, w    63 w + 128 (w - 1) + 63 per window (w adds, w-1 compare+select, subtract m),
//                          + 63 with relu_after, + (64 - t) with a shift t >= 1.
//      XOR and NOT are free; the sign test and the shift are wire relabellings.
//  Narrow registers: with in_bits = I < 64 and out_bits = O the shares enter as their low I bits and the
//  masks as their low O bits (v = a + b mod 2^I is the exact value whenever |v| < 2^(I-1), as the sum of
//  two 64-bit shares of a small value), the layer runs on I bits and only y = r - m runs on O bits, so
//  relu_share costs (I-1) + (I-1) + (O-1) AND gates and I + O input bits per element instead of 189 and
//  128; y is revealed sign-extended, exact whenever |y| < 2^(O-1). The hybrid uses I = 26, O = 49.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
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

// ---------------------------------------------------------------- ReLU and max-pool on shares

/// Elements per round of pool_share: each round inputs, computes and reveals one chunk, so memory stays
/// at a few tens of MB per party whatever n is (a label is 16 bytes, an element 64 of them per input).
constexpr size_t kShareChunk = 4096;
/// Largest rescale shift: the rounded result keeps at least one bit of magnitude.
constexpr int kMaxShift = 62;

/// relu(x) = x & !sign(x): the sign test is the top wire; 63 AND gates for 64 bits (the result's sign bit is
/// the constant 0).
inline gc::Integer relu(const gc::Integer& x) {
  const int L = x.size();
  gc::Integer r = x;
  const gc::Bit positive = !x[L - 1];
  for (int i = 0; i + 1 < L; ++i) r[i] = x[i] & positive;
  r[L - 1] = gc::Bit(false, gc::PUBLIC);
  return r;
}

/// floor((x + 2^(t-1)) / 2^t) for signed x and 1 <= t <= L-2, x for t = 0. The arithmetic shift x >> t is a
/// relabelling of wires, and adding 2^(t-1) before it equals adding the dropped bit x[t-1] after it (the
/// carry out of the low t bits). The increment runs over L+1-t bits, enough for the result range
/// [-2^(L-1-t), 2^(L-1-t)], and is then sign-extended: L-t AND gates.
inline gc::Integer round_shift(const gc::Integer& x, int t) {
  if (t == 0) return x;
  const int L = x.size();
  const int w = L + 1 - t;
  gc::Integer r = x;
  gc::Bit carry = x[t - 1];
  for (int i = 0; i < w; ++i) {
    const gc::Bit& yi = x[std::min(i + t, L - 1)];
    r[i] = yi ^ carry;
    if (i + 1 < w) carry = yi & carry;
  }
  for (int i = w; i < L; ++i) r[i] = r[w - 1];
  return r;
}

/// The core of relu_share and maxpool_share (relu_share is window 1 with relu): n values in windows of
/// `window` consecutive values; per window y = round_shift(relu?(max(a + b)), shift) - m, revealed to BOB.
/// BOB (QP) passes a[n] and no m; ALICE (AP) passes b[n] and m[n / window]. Returns y on BOB, {} on ALICE.
/// The values go in chunks of `chunk` elements (one OT-extension round and one reveal each); a window may
/// span chunks, its running maximum is carried over.
inline std::vector<int64_t> pool_share(int party, size_t n, size_t window, bool relu_out, int shift,
                                       const std::vector<int64_t>& a_or_b, const std::vector<int64_t>& m,
                                       size_t chunk = kShareChunk, int in_bits = 64, int out_bits = 64) {
  if (in_bits < 3 || in_bits > 64 || out_bits < in_bits || out_bits > 64)
    throw std::invalid_argument("register widths must satisfy 3 <= in_bits <= out_bits <= 64, got " +
                                std::to_string(in_bits) + " and " + std::to_string(out_bits));
  if (shift > in_bits - 2)
    throw std::invalid_argument("shift " + std::to_string(shift) + " leaves no bits of a " +
                                std::to_string(in_bits) + "-bit value");
  if (n == 0) throw std::invalid_argument("pool_share needs at least one value");
  if (window == 0 || n % window != 0)
    throw std::invalid_argument("the window (" + std::to_string(window) + ") must divide the number of values (" +
                                std::to_string(n) + ")");
  if (shift < 0 || shift > kMaxShift)
    throw std::invalid_argument("shift must be in 0.." + std::to_string(kMaxShift) + ", got " + std::to_string(shift));
  if (chunk == 0) throw std::invalid_argument("chunk must be positive");
  const bool bob = party == gc::BOB;
  const size_t k = n / window;
  if (a_or_b.size() != n)
    throw std::invalid_argument("expected " + std::to_string(n) + " shares, got " + std::to_string(a_or_b.size()));
  if (!bob && m.size() != k)
    throw std::invalid_argument("expected " + std::to_string(k) + " mask values, got " + std::to_string(m.size()));
  std::vector<int64_t> y;
  if (bob) y.reserve(k);
  gc::Integer best;  // running maximum of the window in progress
  for (size_t s = 0; s < n; s += chunk) {
    const size_t e = std::min(n, s + chunk);
    const size_t j_lo = s / window, j_hi = e / window;  // windows that end inside [s, e)
    // BOB's inputs first: his OT-extension message then leaves at once, saving a round.
    std::vector<int64_t> own;
    if (bob) own.assign(a_or_b.begin() + static_cast<long>(s), a_or_b.begin() + static_cast<long>(e));
    else own.assign(e - s, 0);
    std::vector<gc::Integer> a = gc::input_integers(gc::BOB, in_bits, own);
    own.assign(e - s, 0);
    if (!bob) std::copy(a_or_b.begin() + static_cast<long>(s), a_or_b.begin() + static_cast<long>(e), own.begin());
    std::vector<gc::Integer> b = gc::input_integers(gc::ALICE, in_bits, own);
    own.assign(j_hi - j_lo, 0);
    if (!bob) std::copy(m.begin() + static_cast<long>(j_lo), m.begin() + static_cast<long>(j_hi), own.begin());
    std::vector<gc::Integer> mk = gc::input_integers(gc::ALICE, out_bits, own);
    std::vector<gc::Integer> out;
    out.reserve(j_hi - j_lo);
    for (size_t i = s; i < e; ++i) {
      gc::Integer v = a[i - s] + b[i - s];
      if (i % window == 0)
        best = v;
      else
        best = best.select(v > best, v);
      if (i % window + 1 == window) {
        gc::Integer r = round_shift(relu_out ? relu(best) : best, shift);
        while (r.size() < out_bits) r.bits.push_back(r[r.size() - 1]);  // sign-extend: free wires
        out.push_back(r - mk[i / window - j_lo]);
      }
    }
    if (out.empty()) continue;  // both parties know it: n, window and chunk are public
    std::vector<int64_t> got = gc::reveal_integers(gc::BOB, out);
    if (bob) y.insert(y.end(), got.begin(), got.end());
  }
  return y;
}

/// ReLU on shares: BOB (QP) passes a[n]; ALICE (AP) passes b[n] and m[n]. Returns
/// y = round_shift(relu(a + b), shift) - m on BOB, {} on ALICE.
inline std::vector<int64_t> relu_share(int party, size_t n, const std::vector<int64_t>& a_or_b,
                                       const std::vector<int64_t>& m, int shift = 0, size_t chunk = kShareChunk,
                                       int in_bits = 64, int out_bits = 64) {
  return pool_share(party, n, 1, true, shift, a_or_b, m, chunk, in_bits, out_bits);
}

/// Max-pool on shares: BOB (QP) passes a[n]; ALICE (AP) passes b[n] and m[n / window]. Returns
/// y_j = round_shift(max(v[j*w .. j*w+w-1]), shift) - m_j (relu'd before the shift if relu_after) on BOB.
inline std::vector<int64_t> maxpool_share(int party, size_t n, size_t window, const std::vector<int64_t>& a_or_b,
                                          const std::vector<int64_t>& m, int shift = 0, bool relu_after = false,
                                          size_t chunk = kShareChunk, int in_bits = 64, int out_bits = 64) {
  return pool_share(party, n, window, relu_after, shift, a_or_b, m, chunk, in_bits, out_bits);
}

}  // namespace capc_programs
