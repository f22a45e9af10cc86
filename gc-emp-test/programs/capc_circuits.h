// capc_circuits.h — CaPC's 2PC computations, used by the command-line programs and the Python module.
//
//  argmax_share (step 1b): QP (BOB) inputs a, AP (ALICE) inputs b and a uniform mask m, all int64[C].
//      v = a + b (mod 2^64, signed), k = argmax v (lowest index wins ties),
//      w = onehot(k) - m (mod 2^64) revealed to BOB only.  Nobody learns k or v.
//  noisy_argmax (step 3, Confident-GNMax of Papernot et al., "Scalable Private Learning with PATE",
//      ICLR 2018, Algorithm 1): QP (BOB) inputs W; PG (ALICE) inputs M, eta_G (C values), eta_T, T.
//      h = W + M; answered = max(h) + eta_T >= T, revealed to both;
//      if answered: label = argmax(h + eta_G) revealed to BOB only; otherwise nothing more is learnt.
//  relu_share: QP inputs a[n]; AP inputs b[n] and a mask m[n]. v = a + b (mod 2^64, signed);
//      y_i = round_shift(relu(v_i), t) - m_i (mod 2^64), revealed to BOB only.
//  maxpool_share: QP inputs a[n]; AP inputs b[n] and m[k]; public window w with n = k*w (window j is
//      v[j*w .. j*w+w-1]); y_j = round_shift(max(window j), t) - m_j, optionally relu'd before the shift.
//  round_shift(x, t) = floor((x + 2^(t-1)) / 2^t) for a public t in 1..62 (round to nearest, halves up), x when
//      t = 0. It is exact integer arithmetic, so |round_shift(x, t) - x/2^t| <= 1/2; when the caller's shares
//      carry the usual +-1 of share rounding, the result is within 1/2 + 2^-t of the exact rescale.
//  Narrow registers: with in_bits = I < 64 and out_bits = O the shares enter as their low I bits (v = a + b
//      mod 2^I is the exact value whenever |v| < 2^(I-1), as the sum of two 64-bit shares of a small value),
//      the layer runs on I bits and y = r - m is formed mod 2^O; y is revealed sign-extended, exact whenever
//      |y| < 2^(O-1). The hybrid uses I = 26, O = 49.
//
// Two implementations of the same functions:
//  * portable:: written once against the emp-shaped API (gc_compat.h), so it builds against a real EMP
//    install (-DCAPC_GC_BACKEND=emp); on capc's engine the tests run it against the other one.
//  * sliced:: capc's engine only, and what its programs and Python module run: registers are bit-sliced
//    across independent lanes (elements, windows, tournament pairs), so every AND layer is one batched
//    call (Backend::and_n) whose hashes are pipelined and whose tables move in bulk, and outputs leave
//    through the engine's output tables (Backend::reveal_weighted), which also absorb the rescale: y is a
//    weighted sum of output wires, round_shift(x, t) = (x >> t) + x[t-1] is just two weights.
// AND gates (XOR/NOT free; counted with Backend::and_gates() in test_circuits, exactly), sliced:
//      argmax_share, C classes   63 C (add) + 128 (C - 1) (tournament: compare + select) + (C - 2) (one-hot)
//      relu_share, I bits, t     (I - 1) (add) + (I - 1) (relu) for t = 0; (I - 1) + (I - t) for t >= 1
//      maxpool_share, window w   (I - 1) w + 2 I (w - 1) per window, + (I - 1) or (I - t) with relu_after
// and per output value 2·ceil((O - tz)/8) bytes of output table per output wire (tz: the weight's trailing
// zeros): no AND gate and no mask input for y = r - m. The garbler's inputs cost no bytes (seeded labels);
// the evaluator's cost 16 bytes each (OT extension).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gc_compat.h"

namespace capc_programs {

/// Bits of a class-index register: enough for C-1, plus a zero sign bit so reveals sign-extend to >= 0.
inline int index_bits(size_t classes) {
  int b = 1;
  while ((size_t{1} << b) < classes) ++b;
  return b + 1;
}

/// Elements per round of pool_share: each round inputs, computes and reveals one chunk, so memory stays
/// at a few MB per party whatever n is (a label is 16 bytes, an element in_bits of them per party).
constexpr size_t kShareChunk = 4096;
/// Largest rescale shift: the rounded result keeps at least one bit of magnitude.
constexpr int kMaxShift = 62;

/// The argument checks shared by both implementations of pool_share.
inline void check_pool_args(int party, size_t n, size_t window, int shift, size_t a_len, size_t m_len, size_t chunk,
                            int in_bits, int out_bits) {
  if (in_bits < 3 || in_bits > 64 || out_bits < in_bits || out_bits > 64)
    throw std::invalid_argument("register widths must satisfy 3 <= in_bits <= out_bits <= 64, got " +
                                std::to_string(in_bits) + " and " + std::to_string(out_bits));
  if (shift < 0 || shift > kMaxShift)
    throw std::invalid_argument("shift must be in 0.." + std::to_string(kMaxShift) + ", got " + std::to_string(shift));
  if (shift > in_bits - 2)
    throw std::invalid_argument("shift " + std::to_string(shift) + " leaves no bits of a " +
                                std::to_string(in_bits) + "-bit value");
  if (n == 0) throw std::invalid_argument("pool_share needs at least one value");
  if (window == 0 || n % window != 0)
    throw std::invalid_argument("the window (" + std::to_string(window) + ") must divide the number of values (" +
                                std::to_string(n) + ")");
  if (chunk == 0) throw std::invalid_argument("chunk must be positive");
  if (a_len != n) throw std::invalid_argument("expected " + std::to_string(n) + " shares, got " + std::to_string(a_len));
  if (party != gc::BOB && m_len != n / window)
    throw std::invalid_argument("expected " + std::to_string(n / window) + " mask values, got " +
                                std::to_string(m_len));
}

// ==================================================================== portable (emp-shaped API)
namespace portable {

/// Maximum of v by a tournament (pairs of neighbours, the left one keeps ties); g[l][p] is set when the right
/// entry of pair p of level l won. C-1 comparisons, as a linear scan, but log2(C) deep.
inline gc::Integer tournament(std::vector<gc::Integer> v, std::vector<std::vector<gc::Bit>>* g = nullptr) {
  while (v.size() > 1) {
    std::vector<gc::Integer> next;
    std::vector<gc::Bit> level;
    for (size_t p = 0; p + 1 < v.size(); p += 2) {
      gc::Bit right_wins = v[p + 1] > v[p];  // strict: on a tie the lower index stays
      next.push_back(v[p].select(right_wins, v[p + 1]));
      level.push_back(right_wins);
    }
    if (v.size() % 2 == 1) next.push_back(v.back());
    if (g != nullptr) g->push_back(level);
    v.swap(next);
  }
  return v[0];
}

/// One-hot vector of the tournament's winner, top-down: a node's indicator e splits into right = e & g and
/// left = e ^ right. C-2 AND gates (the root's split is free).
inline std::vector<gc::Bit> tournament_onehot(const std::vector<std::vector<gc::Bit>>& g, size_t classes) {
  std::vector<size_t> counts = {classes};
  for (const auto& level : g) counts.push_back(level.size() + counts.back() % 2);
  std::vector<gc::Bit> e = {gc::Bit(true, gc::PUBLIC)};
  for (size_t l = g.size(); l-- > 0;) {
    std::vector<gc::Bit> below(counts[l]);
    const std::vector<gc::Bit>& gl = g[l];
    for (size_t p = 0; p < gl.size(); ++p) {
      const bool top = l + 1 == g.size();  // e is the constant 1
      below[2 * p + 1] = top ? gl[p] : (e[p] & gl[p]);
      below[2 * p] = top ? !gl[p] : (e[p] ^ below[2 * p + 1]);
    }
    if (counts[l] % 2 == 1) below.back() = e.back();
    e.swap(below);
  }
  return e;
}

/// Index of the one-hot position, as an index_bits(C)-bit register: bit b is the XOR of the indicators whose
/// index has bit b set (exactly one indicator is 1), so no AND gate.
inline gc::Integer onehot_index(const std::vector<gc::Bit>& e) {
  const int L = index_bits(e.size());
  gc::Integer idx(L, 0, gc::PUBLIC);
  for (size_t i = 1; i < e.size(); ++i)
    for (int b = 0; b < L - 1; ++b)
      if ((i >> b) & 1) idx[b] = idx[b] ^ e[i];
  return idx;
}

/// Step 1b. party 2 (BOB, QP) passes a; party 1 (ALICE, AP) passes b and m. Returns w on BOB, {} on ALICE.
inline std::vector<int64_t> argmax_share(int party, size_t classes, const std::vector<int64_t>& a_or_b,
                                         const std::vector<int64_t>& m) {
  if (classes == 0) throw std::invalid_argument("argmax_share needs at least one class");
  const std::vector<int64_t> none(classes, 0);
  const bool bob = party == gc::BOB;
  // BOB's inputs first: his OT-extension message then leaves at once, saving a round.
  std::vector<gc::Integer> a = gc::input_integers(gc::BOB, 64, bob ? a_or_b : none);
  std::vector<gc::Integer> b = gc::input_integers(gc::ALICE, 64, bob ? none : a_or_b);
  std::vector<gc::Integer> v(classes);
  for (size_t i = 0; i < classes; ++i) v[i] = a[i] + b[i];
  std::vector<std::vector<gc::Bit>> g;
  tournament(v, &g);
  const std::vector<gc::Bit> e = tournament_onehot(g, classes);
  std::vector<gc::Integer> onehot;
  for (const gc::Bit& bit : e) {
    gc::Integer x(1, 0, gc::PUBLIC);
    x[0] = bit;
    onehot.push_back(x);
  }
  return reveal_minus_mask(party, onehot, false, m, 64);
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
  std::vector<gc::Integer> h(classes), noisy(classes);
  for (size_t i = 0; i < classes; ++i) {
    h[i] = W[i] + in[i];
    noisy[i] = h[i] + in[classes + i];
  }
  gc::Bit answered_bit = (tournament(h) + in[2 * classes]) >= in[2 * classes + 1];
  std::vector<std::vector<gc::Bit>> g;
  tournament(noisy, &g);
  const gc::Integer idx = onehot_index(tournament_onehot(g, classes));
  // The label register is 0 unless answered, so its decoding bits can travel with the garbler's last
  // message (no extra round for the QP to report `answered` first): when not answered they decode to 0,
  // which tells the QP nothing it does not learn from `answered` itself.
  const gc::Integer label_reg = gc::Integer(idx.size(), 0, gc::PUBLIC).select(answered_bit, idx);
  NoisyArgmaxResult r;
  const int64_t l = label_reg.reveal<int64_t>(gc::BOB);
  r.answered = answered_bit.reveal<bool>(gc::PUBLIC);
  if (r.answered && bob) r.label = l;
  return r;
}

/// relu(x) = x & !sign(x): the sign test is the top wire; L-1 AND gates (the result's sign bit is the
/// constant 0).
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
  check_pool_args(party, n, window, shift, a_or_b.size(), m.size(), chunk, in_bits, out_bits);
  const bool bob = party == gc::BOB;
  std::vector<int64_t> y;
  if (bob) y.reserve(n / window);
  gc::Integer best;  // running maximum of the window in progress
  for (size_t s = 0; s < n; s += chunk) {
    const size_t e = std::min(n, s + chunk);
    const size_t j_lo = s / window, j_hi = e / window;  // windows that end inside [s, e)
    // BOB's inputs first: his OT-extension message then leaves at once, saving a round.
    std::vector<int64_t> own(e - s, 0);
    if (bob) std::copy(a_or_b.begin() + static_cast<long>(s), a_or_b.begin() + static_cast<long>(e), own.begin());
    std::vector<gc::Integer> a = gc::input_integers(gc::BOB, in_bits, own);
    own.assign(e - s, 0);
    if (!bob) std::copy(a_or_b.begin() + static_cast<long>(s), a_or_b.begin() + static_cast<long>(e), own.begin());
    std::vector<gc::Integer> b = gc::input_integers(gc::ALICE, in_bits, own);
    std::vector<gc::Integer> out;
    out.reserve(j_hi - j_lo);
    for (size_t i = s; i < e; ++i) {
      gc::Integer v = a[i - s] + b[i - s];
      if (i % window == 0)
        best = v;
      else
        best = best.select(v > best, v);
      if (i % window + 1 == window) out.push_back(round_shift(relu_out ? relu(best) : best, shift));
    }
    if (out.empty()) continue;  // both parties know it: n, window and chunk are public
    std::vector<int64_t> mk;
    if (!bob) mk.assign(m.begin() + static_cast<long>(j_lo), m.begin() + static_cast<long>(j_hi));
    std::vector<int64_t> got = reveal_minus_mask(party, out, true, mk, out_bits);
    if (bob) y.insert(y.end(), got.begin(), got.end());
  }
  return y;
}

}  // namespace portable

#ifndef CAPC_GC_BACKEND_EMP
// ==================================================================== sliced (capc's engine)
namespace sliced {

using capc_gc::block;

/// Label arithmetic on bit-sliced registers: a register of `bits` bits over `n` lanes is bits*n labels,
/// bit-major (x[i*n + e] is bit i of lane e). Every AND layer is one Backend::and_n call over all lanes.
class Ops {
 public:
  explicit Ops(capc_gc::Backend& be) : be_(be), not_mask_(be.not_mask()) {}
  capc_gc::Backend& backend() { return be_; }

  static void xor_into(block* x, const block* y, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] = capc_gc::xor_block(x[i], y[i]);
  }
  void not_into(block* x, size_t n) const {
    for (size_t i = 0; i < n; ++i) x[i] = capc_gc::xor_block(x[i], not_mask_);
  }
  void and_n(const block* a, const block* b, block* out, size_t n) { be_.and_n(a, b, out, n); }

  /// v = a + b mod 2^bits (ripple carry, carry' = c ^ ((a ^ c) & (b ^ c))): bits-1 AND gates per lane.
  void add(const block* a, const block* b, block* v, int bits, size_t n) {
    carry_.resize(n);
    x_.resize(n);
    y_.resize(n);
    for (size_t e = 0; e < n; ++e) v[e] = capc_gc::xor_block(a[e], b[e]);
    if (bits > 1) and_n(a, b, carry_.data(), n);
    for (int i = 1; i < bits; ++i) {
      const block* ai = a + static_cast<size_t>(i) * n;
      const block* bi = b + static_cast<size_t>(i) * n;
      block* vi = v + static_cast<size_t>(i) * n;
      for (size_t e = 0; e < n; ++e) {
        x_[e] = capc_gc::xor_block(ai[e], carry_[e]);
        y_[e] = capc_gc::xor_block(bi[e], carry_[e]);
        vi[e] = capc_gc::xor_block(x_[e], bi[e]);
      }
      if (i + 1 < bits) {
        and_n(x_.data(), y_.data(), x_.data(), n);
        xor_into(carry_.data(), x_.data(), n);
      }
    }
  }

  /// out = (x >= y) as signed bits-bit values: the carry out of x' + ~y' + 1 with the sign bits flipped
  /// (bits AND gates per lane).
  void geq(const block* x, const block* y, block* out, int bits, size_t n) {
    x_.resize(n);
    y_.resize(n);
    // Bit 0 with carry-in 1: c1 = 1 ^ (~x0 & y0).
    for (size_t e = 0; e < n; ++e) x_[e] = capc_gc::xor_block(x[e], not_mask_);
    and_n(x_.data(), y, out, n);
    not_into(out, n);
    for (int i = 1; i < bits; ++i) {
      const block* xi = x + static_cast<size_t>(i) * n;
      const block* yi = y + static_cast<size_t>(i) * n;
      const bool top = i + 1 == bits;  // x' = ~x, ~y' = y there; elsewhere x' = x, ~y' = ~y
      const block fx = top ? not_mask_ : capc_gc::zero_block();
      const block fy = top ? capc_gc::zero_block() : not_mask_;
      for (size_t e = 0; e < n; ++e) {
        x_[e] = capc_gc::xor_block(capc_gc::xor_block(xi[e], fx), out[e]);
        y_[e] = capc_gc::xor_block(capc_gc::xor_block(yi[e], fy), out[e]);
      }
      and_n(x_.data(), y_.data(), x_.data(), n);
      xor_into(out, x_.data(), n);
    }
  }

  /// x = sel ? y : x per lane (sel: one label per lane), as x ^= sel & (x ^ y): bits AND gates per lane.
  void select_into(block* x, const block* sel, const block* y, int bits, size_t n) {
    const size_t total = static_cast<size_t>(bits) * n;
    x_.resize(total);
    y_.resize(total);
    for (int i = 0; i < bits; ++i)
      for (size_t e = 0; e < n; ++e) {
        const size_t k = static_cast<size_t>(i) * n + e;
        x_[k] = sel[e];
        y_[k] = capc_gc::xor_block(x[k], y[k]);
      }
    and_n(x_.data(), y_.data(), x_.data(), total);
    xor_into(x, x_.data(), total);
  }

  /// out[i] = x[i] & s (s: one label per lane) for bits lo..hi-1 of x; out has (hi-lo)*n labels.
  void and_broadcast(const block* x, const block* s, int lo, int hi, block* out, size_t n) {
    const size_t total = static_cast<size_t>(hi - lo) * n;
    x_.resize(total);
    for (int i = lo; i < hi; ++i)
      for (size_t e = 0; e < n; ++e) x_[static_cast<size_t>(i - lo) * n + e] = s[e];
    and_n(x + static_cast<size_t>(lo) * n, x_.data(), out, total);
  }

 private:
  capc_gc::Backend& be_;
  block not_mask_;
  std::vector<block> carry_, x_, y_;
};

/// Input `bits`-bit values of `owner` as a bit-sliced register over n lanes (value e of lane e). Only the
/// owner reads values; the other party passes anything of the same length (or nullptr).
inline void feed_sliced(capc_gc::Backend& be, int owner, const int64_t* values, int bits, size_t n,
                        std::vector<uint8_t>& scratch, block* labels) {
  const size_t total = static_cast<size_t>(bits) * n;
  scratch.assign(total, 0);  // uint8_t, not vector<bool>, so it can be passed as bool*
  if (owner == be.party())
    for (int i = 0; i < bits; ++i)
      for (size_t e = 0; e < n; ++e)
        scratch[static_cast<size_t>(i) * n + e] = (static_cast<uint64_t>(values[e]) >> i) & 1;
  be.feed(labels, owner, reinterpret_cast<const bool*>(scratch.data()), total);
}

/// Step 1b on capc's engine: party 2 (BOB) passes a[C] and w[C] (written); party 1 (ALICE) passes b[C] and
/// m[C]. The adds are batched across classes, the tournament level by level, the one-hot top-down; the
/// output w = onehot - m leaves through output tables (16 bytes per class).
inline void argmax_share(int party, size_t classes, const int64_t* a_or_b, const int64_t* m, int64_t* w) {
  if (classes == 0) throw std::invalid_argument("argmax_share needs at least one class");
  capc_gc::Backend& be = capc_gc::backend();
  Ops ops(be);
  const size_t C = classes;
  const bool bob = party == capc_gc::BOB;
  std::vector<uint8_t> scratch;
  std::vector<block> A(64 * C), B(64 * C), V(64 * C);
  // BOB's inputs first: his OT-extension message then leaves at once, saving a round.
  feed_sliced(be, capc_gc::BOB, bob ? a_or_b : nullptr, 64, C, scratch, A.data());
  feed_sliced(be, capc_gc::ALICE, bob ? nullptr : a_or_b, 64, C, scratch, B.data());
  ops.add(A.data(), B.data(), V.data(), 64, C);
  // Tournament: lanes are the candidates of a level; pair p = (2p, 2p+1), the right one wins if strictly
  // greater (so the lowest index wins ties), an odd last candidate passes through.
  std::vector<std::vector<block>> g;  // per level: one "right wins" label per pair
  std::vector<size_t> counts = {C};
  std::vector<block> cur = V, left, right, next;
  while (counts.back() > 1) {
    const size_t cnt = counts.back(), P = cnt / 2;
    left.resize(64 * P);
    right.resize(64 * P);
    for (int i = 0; i < 64; ++i)
      for (size_t p = 0; p < P; ++p) {
        left[static_cast<size_t>(i) * P + p] = cur[static_cast<size_t>(i) * cnt + 2 * p];
        right[static_cast<size_t>(i) * P + p] = cur[static_cast<size_t>(i) * cnt + 2 * p + 1];
      }
    std::vector<block> gl(P);
    ops.geq(left.data(), right.data(), gl.data(), 64, P);
    ops.not_into(gl.data(), P);  // right wins = !(left >= right)
    ops.select_into(left.data(), gl.data(), right.data(), 64, P);
    const size_t nc = P + cnt % 2;
    next.resize(64 * nc);
    for (int i = 0; i < 64; ++i) {
      for (size_t p = 0; p < P; ++p) next[static_cast<size_t>(i) * nc + p] = left[static_cast<size_t>(i) * P + p];
      if (cnt % 2) next[static_cast<size_t>(i) * nc + P] = cur[static_cast<size_t>(i) * cnt + cnt - 1];
    }
    cur.swap(next);
    g.push_back(std::move(gl));
    counts.push_back(nc);
  }
  // One-hot top-down: a pair's indicator e splits into right = e & g, left = e ^ right; at the root e = 1.
  std::vector<block> e = {be.public_label(true)}, below, rw;
  for (size_t l = g.size(); l-- > 0;) {
    const size_t P = g[l].size(), cnt = counts[l];
    below.resize(cnt);
    rw.resize(P);
    if (l + 1 == g.size()) {
      rw = g[l];
    } else {
      ops.and_n(e.data(), g[l].data(), rw.data(), P);
    }
    for (size_t p = 0; p < P; ++p) {
      below[2 * p + 1] = rw[p];
      below[2 * p] = capc_gc::xor_block(e[p], rw[p]);
    }
    if (cnt % 2) below[cnt - 1] = e[P];
    e.swap(below);
  }
  const uint64_t weight = 1;
  be.reveal_weighted(e.data(), C, &weight, 1, 64, bob ? nullptr : m, bob ? w : nullptr);
}

/// The output wires of a finished window register r (I bits over n lanes) and their weights, so that
/// sum_k weight_k * wire_k = round_shift(relu?(r), t) mod 2^64. With relu the wires are r_i & !sign.
/// Wires are laid out per lane (labels[e*g + k]) as reveal_weighted wants them.
struct PoolOutput {
  std::vector<uint64_t> weights;
  int lo = 0, hi = 0;  // the register bits the wires come from: [lo, hi)

  PoolOutput(int I, int t, bool relu) {
    lo = t > 0 ? t - 1 : 0;
    hi = relu ? I - 1 : I;  // relu: the sign bit of the result is 0
    for (int i = lo; i < hi; ++i) {
      uint64_t w;
      if (t > 0 && i == t - 1)
        w = 1;  // the rounding bit: round_shift(x, t) = (x >> t) + x[t-1]
      else
        w = uint64_t{1} << (i - t);
      if (!relu && i == I - 1) w = uint64_t{0} - w;  // two's complement sign bit
      weights.push_back(w);
    }
  }
  size_t wires() const { return weights.size(); }
};

/// relu_share / maxpool_share on capc's engine (see portable::pool_share for the contract), writing y on
/// BOB. Rounds: whole windows of up to `chunk` elements per round (inputs of a round go in one OT
/// extension); a window longer than `chunk` is split across rounds with its running maximum carried. Per
/// round the registers are bit-sliced across the round's windows, position by position.
inline void pool_share(int party, size_t n, size_t window, bool relu_out, int shift, const int64_t* a_or_b,
                       const int64_t* m, int64_t* y, size_t chunk = kShareChunk, int in_bits = 64,
                       int out_bits = 64) {
  check_pool_args(party, n, window, shift, n, party == capc_gc::BOB ? 0 : n / window, chunk, in_bits, out_bits);
  capc_gc::Backend& be = capc_gc::backend();
  Ops ops(be);
  const bool bob = party == capc_gc::BOB;
  const int I = in_bits;
  const size_t w = window, k = n / w;
  const size_t per_round = w <= chunk ? std::max<size_t>(1, chunk / w) : 1;  // windows per round
  const size_t seg = w <= chunk ? w : chunk;                                 // positions per round
  const PoolOutput out(I, shift, relu_out);
  const size_t g = out.wires(), I_ = static_cast<size_t>(I);
  std::vector<uint8_t> scratch;
  std::vector<int64_t> vals;
  std::vector<block> A, B, V(I_ * per_round), best(I_ * per_round), gt(per_round), pos(per_round), wires, sel;
  for (size_t j0 = 0; j0 < k; j0 += per_round) {
    const size_t nw = std::min(per_round, k - j0);
    for (size_t p0 = 0; p0 < w; p0 += seg) {
      const size_t len = std::min(seg, w - p0), lanes = len * nw;
      // Values of this round, position-major: lane (p, e) is element (j0 + e) * w + p0 + p.
      vals.assign(lanes, 0);
      for (size_t p = 0; p < len; ++p)
        for (size_t e = 0; e < nw; ++e) vals[p * nw + e] = a_or_b[(j0 + e) * w + p0 + p];
      A.resize(I_ * lanes);
      B.resize(I_ * lanes);
      // Fed per position p as I bits over nw lanes, one feed per party for the whole round.
      std::vector<uint8_t> bits(I_ * lanes, 0);
      for (int owner : {capc_gc::BOB, capc_gc::ALICE}) {
        if (owner == party)
          for (size_t p = 0; p < len; ++p)
            for (int i = 0; i < I; ++i)
              for (size_t e = 0; e < nw; ++e)
                bits[(p * I_ + static_cast<size_t>(i)) * nw + e] =
                    (static_cast<uint64_t>(vals[p * nw + e]) >> i) & 1;
        else
          std::fill(bits.begin(), bits.end(), 0);
        be.feed(owner == capc_gc::BOB ? A.data() : B.data(), owner, reinterpret_cast<const bool*>(bits.data()),
                I_ * lanes);
      }
      for (size_t p = 0; p < len; ++p) {
        block* dst = (p0 + p == 0) ? best.data() : V.data();
        ops.add(A.data() + p * I_ * nw, B.data() + p * I_ * nw, dst, I, nw);
        if (p0 + p == 0) continue;
        ops.geq(best.data(), V.data(), gt.data(), I, nw);
        ops.not_into(gt.data(), nw);  // v > best = !(best >= v): the earlier value keeps ties
        ops.select_into(best.data(), gt.data(), V.data(), I, nw);
      }
    }
    // The round's windows are complete: their output wires, lane-major for reveal_weighted.
    const size_t nwires = g * nw;
    wires.resize(nwires);
    if (relu_out) {
      for (size_t e = 0; e < nw; ++e)
        pos[e] = capc_gc::xor_block(best[static_cast<size_t>(I - 1) * nw + e], be.not_mask());
      sel.resize(g * nw);
      ops.and_broadcast(best.data(), pos.data(), out.lo, out.hi, sel.data(), nw);
      for (size_t kk = 0; kk < g; ++kk)
        for (size_t e = 0; e < nw; ++e) wires[e * g + kk] = sel[kk * nw + e];
    } else {
      for (size_t kk = 0; kk < g; ++kk)
        for (size_t e = 0; e < nw; ++e) wires[e * g + kk] = best[(static_cast<size_t>(out.lo) + kk) * nw + e];
    }
    be.reveal_weighted(wires.data(), nw, out.weights.data(), g, out_bits, bob ? nullptr : m + j0,
                       bob ? y + j0 : nullptr);
  }
}

}  // namespace sliced

// What capc's programs and Python module run.
inline std::vector<int64_t> argmax_share(int party, size_t classes, const std::vector<int64_t>& a_or_b,
                                         const std::vector<int64_t>& m) {
  if (a_or_b.size() != classes || (party != gc::BOB && m.size() != classes))
    throw std::invalid_argument("argmax_share: expected " + std::to_string(classes) + " values per input");
  std::vector<int64_t> w(party == gc::BOB ? classes : 0);
  sliced::argmax_share(party, classes, a_or_b.data(), party == gc::BOB ? nullptr : m.data(),
                       party == gc::BOB ? w.data() : nullptr);
  return w;
}

inline std::vector<int64_t> pool_share(int party, size_t n, size_t window, bool relu_out, int shift,
                                       const std::vector<int64_t>& a_or_b, const std::vector<int64_t>& m,
                                       size_t chunk = kShareChunk, int in_bits = 64, int out_bits = 64) {
  check_pool_args(party, n, window, shift, a_or_b.size(), m.size(), chunk, in_bits, out_bits);
  std::vector<int64_t> y(party == gc::BOB ? n / window : 0);
  sliced::pool_share(party, n, window, relu_out, shift, a_or_b.data(), party == gc::BOB ? nullptr : m.data(),
                     party == gc::BOB ? y.data() : nullptr, chunk, in_bits, out_bits);
  return y;
}
#else
using portable::argmax_share;
using portable::pool_share;
#endif

using portable::noisy_argmax;
using portable::NoisyArgmaxResult;

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
