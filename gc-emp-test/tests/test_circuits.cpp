// test_circuits — garbled adders, subtractors, signed comparators, equality, mux and the CaPC circuits against
// plain C++ on random and edge inputs (INT64_MIN/MAX, negatives, ties; C = 1, 2, 10, 100, 1000), ReLU and
// max-pool on shares (rounding boundaries of the shift, windows spanning chunks) and their exact AND-gate
// counts. Both parties run in two threads over a socketpair with real garbling, OT and decoding.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "capc_circuits.h"
#include "test_util.h"

using namespace capc_gc;

namespace {

bool quick = false;
PRG rng;

uint64_t rnd64() {
  uint64_t v;
  rng.random_bytes(&v, 8);
  return v;
}

int64_t edge_or_random(size_t i) {
  static const int64_t edges[] = {0, 1, -1, 2, -2, std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max() - 1,
                                  std::numeric_limits<int64_t>::min() + 1, 1LL << 40, -(1LL << 40)};
  const size_t ne = sizeof edges / sizeof edges[0];
  if (i < ne * ne) return edges[i % ne];
  switch (rnd64() % 3) {
    case 0: return static_cast<int64_t>(rnd64());
    case 1: return static_cast<int64_t>(rnd64() % 2001) - 1000;
    default: return static_cast<int64_t>(rnd64() >> (rnd64() % 64));
  }
}

int64_t wrap_add(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
int64_t wrap_sub(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b)); }

void test_arith() {
  const size_t ne = 11, n = quick ? ne * ne + 50 : ne * ne + 400;
  std::vector<int64_t> a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = edge_or_random(i);
    b[i] = i < ne * ne ? edge_or_random(i / ne) : (rnd64() % 4 == 0 ? a[i] : edge_or_random(i));
  }
  std::vector<bool> sels(n);
  for (size_t i = 0; i < n; ++i) sels[i] = rnd64() & 1;
  test::run_circuit([&](int party) {
    std::vector<Integer> A = input_integers(ALICE, 64, a), B = input_integers(BOB, 64, b);
    std::vector<uint8_t> sb(n);
    for (size_t i = 0; i < n; ++i) sb[i] = sels[i];
    std::vector<block> sl(n);
    backend().feed(sl.data(), ALICE, reinterpret_cast<const bool*>(sb.data()), n);
    for (size_t i = 0; i < n; ++i) {
      const Integer& x = A[i];
      const Integer& y = B[i];
      int64_t sum = (x + y).reveal<int64_t>(PUBLIC);
      int64_t dif = (x - y).reveal<int64_t>(BOB);
      int64_t neg = (-x).reveal<int64_t>(ALICE);
      bool gt = (x > y).reveal<bool>(PUBLIC), ge = (x >= y).reveal<bool>(PUBLIC);
      bool lt = (x < y).reveal<bool>(PUBLIC), le = (x <= y).reveal<bool>(PUBLIC);
      bool eq = (x == y).reveal<bool>(PUBLIC), ne_ = (x != y).reveal<bool>(PUBLIC);
      int64_t mux = x.select(Bit(sl[i]), y).reveal<int64_t>(PUBLIC);
      int64_t xr = (x ^ y).reveal<int64_t>(PUBLIC), an = (x & y).reveal<int64_t>(PUBLIC);
      if (party == BOB) {
        CHECK_EQ(sum, wrap_add(a[i], b[i]));
        CHECK_EQ(dif, wrap_sub(a[i], b[i]));
        CHECK_EQ(neg, 0);  // revealed to ALICE only
        CHECK_EQ(gt, a[i] > b[i]);
        CHECK_EQ(ge, a[i] >= b[i]);
        CHECK_EQ(lt, a[i] < b[i]);
        CHECK_EQ(le, a[i] <= b[i]);
        CHECK_EQ(eq, a[i] == b[i]);
        CHECK_EQ(ne_, a[i] != b[i]);
        CHECK_EQ(mux, sels[i] ? b[i] : a[i]);
        CHECK_EQ(xr, a[i] ^ b[i]);
        CHECK_EQ(an, a[i] & b[i]);
      } else {
        CHECK_EQ(dif, 0);  // revealed to BOB only
        CHECK_EQ(neg, wrap_sub(0, a[i]));
      }
    }
    // Short integers and public constants.
    Integer s5(5, -3, ALICE), c5(5, 7, PUBLIC);
    int64_t r = (s5 + c5).reveal<int64_t>(PUBLIC);
    if (party == BOB) CHECK_EQ(r, 4);
    Bit t(true, PUBLIC), f(false, PUBLIC), ba(true, ALICE), bb(false, BOB);
    bool r1 = (t & ba).reveal<bool>(PUBLIC), r2 = (f | bb).reveal<bool>(PUBLIC), r3 = (!ba).reveal<bool>(PUBLIC);
    bool r4 = (ba ^ bb).reveal<bool>(PUBLIC), r5 = (ba | bb).reveal<bool>(PUBLIC);
    if (party == BOB) {
      CHECK(r1 && !r2 && !r3 && r4 && r5);
    }
  });
}

size_t plain_argmax(const std::vector<int64_t>& v) {
  size_t k = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[k]) k = i;
  return k;
}

std::vector<int64_t> make_logits(size_t C, int mode) {
  std::vector<int64_t> v(C);
  for (size_t i = 0; i < C; ++i) {
    switch (mode) {
      case 0: v[i] = static_cast<int64_t>(rnd64()); break;                            // full range
      case 1: v[i] = static_cast<int64_t>(rnd64() % 7) - 3; break;                     // many ties
      case 2: v[i] = 5; break;                                                         // all equal
      case 3: v[i] = (i % 2) ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min(); break;
      default: v[i] = -static_cast<int64_t>(rnd64() % 1000000) - 1; break;            // all negative
    }
  }
  return v;
}

void test_argmax_share() {
  std::vector<size_t> sizes = {1, 2, 10, 100};
  if (!quick) sizes.push_back(1000);
  for (size_t C : sizes) {
    for (int mode = 0; mode < (C >= 1000 ? 2 : 5); ++mode) {
      std::vector<int64_t> v = make_logits(C, mode), a(C), b(C), m(C), w;
      for (size_t i = 0; i < C; ++i) {
        b[i] = static_cast<int64_t>(rnd64());
        a[i] = wrap_sub(v[i], b[i]);  // a + b = v (mod 2^64)
        m[i] = static_cast<int64_t>(rnd64());
      }
      std::vector<int64_t> w_alice = {42}, w_portable;
      uint64_t ands = 0, alice_sent = 0, bob_sent = 0;
      test::run_pair(
          [&](IOChannel& io) {
            block sid = handshake(io, ALICE, kProgArgmaxShare, static_cast<uint32_t>(C));
            setup_semi_honest(&io, ALICE, sid);
            const uint64_t g0 = backend().and_gates(), s0 = io.bytes_sent();
            w_alice = capc_programs::argmax_share(ALICE, C, b, m);
            ands = backend().and_gates() - g0;
            alice_sent = io.bytes_sent() - s0;
            capc_programs::portable::argmax_share(ALICE, C, b, m);
            finalize_semi_honest();
          },
          [&](IOChannel& io) {
            block sid = handshake(io, BOB, kProgArgmaxShare, static_cast<uint32_t>(C));
            setup_semi_honest(&io, BOB, sid);
            const uint64_t s0 = io.bytes_sent();
            w = capc_programs::argmax_share(BOB, C, a, {});
            bob_sent = io.bytes_sent() - s0;
            w_portable = capc_programs::portable::argmax_share(BOB, C, a, {});
            finalize_semi_honest();
          });
      // adds 63 C, tournament 128 (C-1), one-hot C-2; the garbler sends the tables and 16 bytes of output
      // table per class, nothing for its inputs; the evaluator sends its OT extension (16 bytes per bit).
      CHECK_EQ(ands, 63 * C + 128 * (C - 1) + (C >= 2 ? C - 2 : 0));
      CHECK_EQ(alice_sent, 32 * ands + 16 * C);
      CHECK_EQ(bob_sent, (64 * C + 127) / 128 * 128 * 16);
      const size_t k = plain_argmax(v);
      CHECK_EQ(w.size(), C);
      CHECK(w_alice.empty());
      int bad = 0;
      for (size_t i = 0; i < C && i < w.size(); ++i) bad += wrap_add(w[i], m[i]) != (i == k ? 1 : 0);
      CHECK_EQ(bad, 0);
      CHECK_EQ(w_portable.size(), C);
      for (size_t i = 0; i < C && i < w_portable.size(); ++i) CHECK_EQ(w_portable[i], w[i]);
    }
  }
}

void test_noisy_argmax() {
  std::vector<size_t> sizes = {1, 2, 10, 100};
  if (!quick) sizes.push_back(1000);
  for (size_t C : sizes) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<int64_t> votes(C), W(C), M(C), eg(C);
      for (size_t i = 0; i < C; ++i) {
        votes[i] = static_cast<int64_t>(rnd64() % 50) * 256;
        M[i] = static_cast<int64_t>(rnd64());
        W[i] = wrap_sub(votes[i], M[i]);
        eg[i] = static_cast<int64_t>(rnd64() % 2001) - 1000;
      }
      const int64_t eta_t = static_cast<int64_t>(rnd64() % 2001) - 1000;
      const int64_t mx = *std::max_element(votes.begin(), votes.end());
      // trial 0: clearly answered; 1: clearly not; 2: exactly at the threshold; 3: threshold 0.
      const int64_t thr = trial == 0 ? mx + eta_t - 5 : trial == 1 ? mx + eta_t + 1 : trial == 2 ? mx + eta_t : 0;
      capc_programs::NoisyArgmaxResult ra, rb;
      uint64_t ands = 0;
      test::run_pair(
          [&](IOChannel& io) {
            block sid = handshake(io, ALICE, kProgNoisyArgmax, static_cast<uint32_t>(C));
            setup_semi_honest(&io, ALICE, sid);
            const uint64_t g0 = backend().and_gates();
            ra = capc_programs::noisy_argmax(ALICE, C, M, eg, eta_t, thr);
            ands = backend().and_gates() - g0;
            finalize_semi_honest();
          },
          [&](IOChannel& io) {
            block sid = handshake(io, BOB, kProgNoisyArgmax, static_cast<uint32_t>(C));
            setup_semi_honest(&io, BOB, sid);
            rb = capc_programs::noisy_argmax(BOB, C, W, {}, 0, 0);
            finalize_semi_honest();
          });
      const bool answered = mx + eta_t >= thr;
      std::vector<int64_t> noisy(C);
      for (size_t i = 0; i < C; ++i) noisy[i] = votes[i] + eg[i];
      CHECK_EQ(ra.answered, answered);
      CHECK_EQ(rb.answered, answered);
      CHECK_EQ(ra.label, -1);  // the PG never learns the label
      CHECK_EQ(rb.label, answered ? static_cast<int64_t>(plain_argmax(noisy)) : -1);
      // two adds per class, max and argmax tournaments, answered (add + compare), one-hot, label select
      CHECK_EQ(ands, 126 * C + 127 + 256 * (C - 1) + (C >= 2 ? C - 2 : 0) +
                         static_cast<uint64_t>(capc_programs::index_bits(C)));
    }
  }
}

// ---------------------------------------------------------------- ReLU and max-pool on shares

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

/// floor((x + 2^(t-1)) / 2^t) in 128-bit arithmetic (g++ shifts signed __int128 arithmetically).
int64_t ref_round_shift(int64_t x, int t) {
  if (t == 0) return x;
  const __int128 v = static_cast<__int128>(x) + (static_cast<__int128>(1) << (t - 1));
  return static_cast<int64_t>(v >> t);
}

int64_t ref_pool(const std::vector<int64_t>& v, size_t j, size_t w, bool relu, int t) {
  int64_t mx = *std::max_element(v.begin() + static_cast<long>(j * w), v.begin() + static_cast<long>((j + 1) * w));
  if (relu) mx = std::max<int64_t>(mx, 0);
  return ref_round_shift(mx, t);
}

/// Values that sit on the decision boundaries: sign changes, the extremes, and the rounding ties of shift t.
std::vector<int64_t> boundary_values(int t) {
  std::vector<int64_t> out = {0, 1, -1, 2, -2, kMax, kMin, kMax - 1, kMin + 1, 1LL << 40, -(1LL << 40)};
  if (t > 0) {
    const int64_t unit = int64_t{1} << t, half = int64_t{1} << (t - 1);
    for (int64_t k = -3; k <= 3; ++k)
      for (int64_t d = -1; d <= 1; ++d) out.push_back(k * unit + half + d);
    out.push_back(kMax - half);
    out.push_back(kMax - half + 1);
    out.push_back(kMin + half);
  }
  return out;
}

struct PoolRun {
  std::vector<int64_t> y, y_alice;
  uint64_t and_gates = 0;
};

/// Share v as a + b (b uniform), run pool_share in two threads, and count the garbler's AND gates.
PoolRun run_pool(const std::vector<int64_t>& v, size_t window, bool relu, int shift, const std::vector<int64_t>& m,
                 size_t chunk = capc_programs::kShareChunk, bool portable = false, int in_bits = 64,
                 int out_bits = 64) {
  auto pool = portable ? capc_programs::portable::pool_share : capc_programs::pool_share;
  const size_t n = v.size();
  std::vector<int64_t> a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    b[i] = static_cast<int64_t>(rnd64());
    a[i] = wrap_sub(v[i], b[i]);
  }
  PoolRun r;
  r.y_alice = {42};
  const uint32_t prog = window == 1 && relu ? kProgReluShare : kProgMaxpoolShare;
  test::run_pair(
      [&](IOChannel& io) {
        block sid = handshake(io, ALICE, prog, static_cast<uint32_t>(n));
        setup_semi_honest(&io, ALICE, sid);
        const uint64_t before = backend().and_gates();
        r.y_alice = pool(ALICE, n, window, relu, shift, b, m, chunk, in_bits, out_bits);
        r.and_gates = backend().and_gates() - before;
        finalize_semi_honest();
      },
      [&](IOChannel& io) {
        block sid = handshake(io, BOB, prog, static_cast<uint32_t>(n));
        setup_semi_honest(&io, BOB, sid);
        r.y = pool(BOB, n, window, relu, shift, a, {}, chunk, in_bits, out_bits);
        finalize_semi_honest();
      });
  return r;
}

/// Check y + m against the plain computation; returns the number of wrong outputs.
int check_pool(const std::vector<int64_t>& v, size_t w, bool relu, int t, const std::vector<int64_t>& m,
               const PoolRun& r) {
  CHECK(r.y_alice.empty());  // the AP learns nothing
  CHECK_EQ(r.y.size(), v.size() / w);
  int bad = 0;
  for (size_t j = 0; j < r.y.size() && j < m.size(); ++j) {
    const int64_t want = ref_pool(v, j, w, relu, t);
    if (wrap_add(r.y[j], m[j]) != want) {
      if (bad < 5)
        std::fprintf(stderr, "pool w=%zu relu=%d t=%d window %zu: got %lld want %lld\n", w, relu, t, j,
                     static_cast<long long>(wrap_add(r.y[j], m[j])), static_cast<long long>(want));
      ++bad;
    }
  }
  return bad;
}

std::vector<int64_t> random_masks(size_t k) {
  std::vector<int64_t> m(k);
  for (auto& x : m) x = static_cast<int64_t>(rnd64());
  return m;
}

void test_relu_share() {
  for (int t : {0, 1, 8, 31, 62}) {
    std::vector<int64_t> v = boundary_values(t);
    for (size_t i = 0; i < (quick ? 40u : 200u); ++i) v.push_back(edge_or_random(11 * 11 + i));
    const std::vector<int64_t> m = random_masks(v.size());
    // A chunk of 7 elements exercises the chunk boundaries; the default chunk takes everything at once.
    for (size_t chunk : {size_t{7}, capc_programs::kShareChunk}) {
      PoolRun r = run_pool(v, 1, true, t, m, chunk);
      CHECK_EQ(check_pool(v, 1, true, t, m, r), 0);
      CHECK_EQ(check_pool(v, 1, true, t, m, run_pool(v, 1, true, t, m, chunk, true)), 0);
      // add 63 + relu 63 (t = 0), or relu on bits t-1..62 only (the rescale is two output weights)
      CHECK_EQ(r.and_gates, v.size() * (t == 0 ? 126u : 63u + 64u - static_cast<unsigned>(t)));
    }
  }
  // n = 1 and the masks zero: y is the plain relu.
  PoolRun r = run_pool({-5}, 1, true, 0, {0});
  CHECK(r.y.size() == 1 && r.y[0] == 0);
  r = run_pool({12345}, 1, true, 4, {0});
  CHECK(r.y.size() == 1 && r.y[0] == (12345 + 8) >> 4);
}

void test_maxpool_share() {
  for (size_t w : {size_t{1}, size_t{2}, size_t{4}, size_t{9}}) {
    for (bool relu : {false, true}) {
      for (int t : {0, 8}) {
        const size_t k = quick ? 12 : 40;
        std::vector<int64_t> v(k * w);
        for (size_t j = 0; j < k; ++j) {
          for (size_t i = 0; i < w; ++i) {
            int64_t& x = v[j * w + i];
            switch (j % 6) {
              case 0: x = static_cast<int64_t>(rnd64()); break;                          // full range
              case 1: x = 7; break;                                                      // all tied
              case 2: x = static_cast<int64_t>(rnd64() % 5) - 2; break;                  // ties around 0
              case 3: x = i % 2 ? kMax : kMin; break;                                    // extremes
              case 4: x = -static_cast<int64_t>(rnd64() % 1000) - 1; break;               // all negative
              default: x = boundary_values(t)[(j * w + i) % boundary_values(t).size()]; break;
            }
          }
        }
        const std::vector<int64_t> m = random_masks(k);
        // chunk 4 < 9: a window spans chunks; chunk 5 cuts windows of 2 and 4 unevenly.
        for (size_t chunk : {size_t{4}, size_t{5}, capc_programs::kShareChunk}) {
          PoolRun r = run_pool(v, w, relu, t, m, chunk);
          CHECK_EQ(check_pool(v, w, relu, t, m, r), 0);
          if (chunk != capc_programs::kShareChunk)  // the emp-shaped version, windows across chunks
            CHECK_EQ(check_pool(v, w, relu, t, m, run_pool(v, w, relu, t, m, chunk, true)), 0);
          const uint64_t per_window =
              63 * w + 128 * (w - 1) + (relu ? (t > 0 ? 64 - static_cast<uint64_t>(t) : 63) : 0);
          CHECK_EQ(r.and_gates, k * per_window);
        }
      }
    }
  }
}

void test_pool_bad_arguments() {
  test::run_circuit([&](int party) {
    using capc_programs::pool_share;
    test::check_throws<std::invalid_argument>([&] { pool_share(party, 0, 1, true, 0, {}, {}); }, "n = 0");
    test::check_throws<std::invalid_argument>([&] { pool_share(party, 6, 4, false, 0, std::vector<int64_t>(6), {0}); },
                                              "window does not divide n");
    test::check_throws<std::invalid_argument>([&] { pool_share(party, 2, 1, true, 63, {0, 0}, {0, 0}); }, "shift 63");
    test::check_throws<std::invalid_argument>([&] { pool_share(party, 2, 1, true, 0, {0}, {0, 0}); }, "short shares");
    if (party == ALICE)
      test::check_throws<std::invalid_argument>([&] { pool_share(party, 4, 2, false, 0, {0, 0, 0, 0}, {0}); },
                                                "short mask");
  });
}


/// The hybrid's narrow registers (26-bit layer, 49-bit output): exact within range, fewer gates.
void test_narrow_registers() {
  const int I = 26, O = 49;
  for (size_t w : {size_t{1}, size_t{4}}) {
    for (int t : {0, 3}) {
      const size_t k = quick ? 50 : 300;
      std::vector<int64_t> v(k * w);
      for (size_t i = 0; i < v.size(); ++i) {
        static const int64_t edges[] = {0, 1, -1, (1LL << 25) - 1, -(1LL << 25) + 1, 4, 5, -4, -5};
        v[i] = i < 9 ? edges[i] : static_cast<int64_t>(rnd64() % (1ULL << 26)) - (1LL << 25) + 1;
      }
      std::vector<int64_t> m(k);
      for (auto& x : m) x = static_cast<int64_t>(rnd64() % (1ULL << 47)) - (1LL << 46);
      for (bool portable : {false, true}) {
        PoolRun r = run_pool(v, w, true, t, m, capc_programs::kShareChunk, portable, I, O);
        CHECK_EQ(check_pool(v, w, true, t, m, r), 0);
        if (!portable) {
          const uint64_t relu = t == 0 ? I - 1 : I - t;
          CHECK_EQ(r.and_gates, k * ((I - 1) * w + 2 * I * (w - 1) + relu));
        }
      }
    }
  }
}

/// reveal_weighted: y = sum w_k bit_k - m (mod 2^O) for odd, even, zero and negative weights and every
/// output width, the result sign-extended; no odd weight is refused.
void test_reveal_weighted() {
  const size_t groups = 37, g = 6;
  std::vector<uint8_t> bits(groups * g);
  for (auto& b : bits) b = rnd64() & 1;
  for (int O : {1, 2, 7, 8, 9, 31, 49, 63, 64}) {
    std::vector<uint64_t> w = {rnd64() << 5, rnd64() | 1, 0, uint64_t{0} - 8, rnd64(), 1};
    std::vector<int64_t> m(groups), y(groups);
    for (auto& x : m) x = static_cast<int64_t>(rnd64());
    uint64_t sent = 0;
    test::run_circuit([&](int party) {
      std::vector<block> l(groups * g);
      backend().feed(l.data(), ALICE, reinterpret_cast<const bool*>(bits.data()), l.size());
      auto* sh = dynamic_cast<SemiHonestParty*>(&backend());
      const uint64_t s0 = sh->io().bytes_sent();
      backend().reveal_weighted(l.data(), groups, w.data(), g, O, party == ALICE ? m.data() : nullptr,
                                party == BOB ? y.data() : nullptr);
      if (party == ALICE) sent = sh->io().bytes_sent() - s0;
    });
    const uint64_t mod = O == 64 ? ~uint64_t{0} : (uint64_t{1} << O) - 1;
    size_t per_group = 0;
    for (uint64_t wk : w)
      if ((wk & mod) != 0) per_group += 2 * ((O - __builtin_ctzll(wk & mod) + 7) / 8);
    CHECK_EQ(sent, groups * per_group);
    int bad = 0;
    for (size_t j = 0; j < groups; ++j) {
      uint64_t want = 0;
      for (size_t k = 0; k < g; ++k) want += bits[j * g + k] ? w[k] : 0;
      want = (want - static_cast<uint64_t>(m[j])) & mod;
      int64_t sx = static_cast<int64_t>(want);
      if (O < 64 && ((want >> (O - 1)) & 1)) sx = static_cast<int64_t>(want | ~mod);
      bad += y[j] != sx;
    }
    CHECK_EQ(bad, 0);
  }
  test::check_throws<InputError>([&] {
    test::run_circuit([&](int party) {
      block l = backend().public_label(true);
      const uint64_t even = 6;
      int64_t m0 = 0, y0 = 0;
      backend().reveal_weighted(&l, 1, &even, 1, 64, party == ALICE ? &m0 : nullptr, party == BOB ? &y0 : nullptr);
    });
  }, "no odd weight");
}

/// The emp build's masked reveal (the subtraction in the circuit, m an input of ALICE) and the engine's output
/// tables give the same y, for signed and unsigned values and narrower or wider outputs.
void test_reveal_minus_mask_fallback() {
  for (int L : {1, 5, 26, 64})
    for (int O : {L, std::min(64, L + 23), 64})
      for (bool sgn : {false, true}) {
        const size_t n = 20;
        std::vector<int64_t> vals(n), m(n), y_native, y_circuit;
        for (auto& x : vals) x = static_cast<int64_t>(rnd64());
        for (auto& x : m) x = static_cast<int64_t>(rnd64());
        test::run_circuit([&](int party) {
          std::vector<Integer> r = input_integers(ALICE, L, vals);
          auto yn = capc_programs::reveal_minus_mask(party, r, sgn, m, O);
          auto yc = capc_programs::reveal_minus_mask_circuit(party, r, sgn, m, O);
          if (party == BOB) {
            y_native = yn;
            y_circuit = yc;
          } else {
            CHECK(yn.empty() && yc.empty());
          }
        });
        CHECK_EQ(y_native.size(), n);
        CHECK(y_native == y_circuit);
      }
}

/// Session invariants: one Delta (lsb 1) for every query; the evaluator's labels of the garbler's inputs
/// are the shared seed's PRG blocks and equal the garbler's zero-label ^ bit·Delta for both bit values (at
/// no cost in bytes); its OT labels satisfy the same relation; two queries draw disjoint tweak ranges, the
/// same on both sides.
void test_session_invariants() {
  const size_t n = 300;
  std::vector<uint8_t> abits(n), bbits(n);
  for (size_t i = 0; i < n; ++i) {
    abits[i] = i < 2 ? static_cast<uint8_t>(i) : rnd64() & 1;  // both bit values for sure
    bbits[i] = i < 2 ? static_cast<uint8_t>(1 - i) : rnd64() & 1;
  }
  block delta[2] = {zero_block(), zero_block()}, sid_seen = zero_block();
  std::vector<block> g_alice(n), e_alice(n), g_bob(n), e_bob(n);
  uint64_t alice_feed_bytes = 1, tweaks[2][3] = {};
  std::vector<int64_t> C3 = {5, 9, 1};
  test::run_pair(
      [&](IOChannel& io) {
        block sid = handshake(io, ALICE, kProgBench, 0);
        sid_seen = sid;
        auto* g = dynamic_cast<Garbler*>(setup_semi_honest(&io, ALICE, sid));
        const uint64_t s0 = io.bytes_sent() + io.bytes_received();
        backend().feed(g_alice.data(), ALICE, reinterpret_cast<const bool*>(abits.data()), n);
        alice_feed_bytes = io.bytes_sent() + io.bytes_received() - s0;
        backend().feed(g_bob.data(), BOB, reinterpret_cast<const bool*>(bbits.data()), n);
        for (int q = 0; q < 2; ++q) {
          tweaks[0][q] = g->tweaks_used();
          delta[q] = g->delta();
          capc_programs::argmax_share(ALICE, 3, C3, C3);
        }
        tweaks[0][2] = g->tweaks_used();
        finalize_semi_honest();
      },
      [&](IOChannel& io) {
        block sid = handshake(io, BOB, kProgBench, 0);
        SemiHonestParty* e = setup_semi_honest(&io, BOB, sid);
        backend().feed(e_alice.data(), ALICE, nullptr, n);
        backend().feed(e_bob.data(), BOB, reinterpret_cast<const bool*>(bbits.data()), n);
        for (int q = 0; q < 2; ++q) {
          tweaks[1][q] = e->tweaks_used();
          capc_programs::argmax_share(BOB, 3, C3, {});
        }
        tweaks[1][2] = e->tweaks_used();
        finalize_semi_honest();
      });
  CHECK(lsb(delta[0]));
  CHECK(block_eq(delta[0], delta[1]));  // one Delta per session
  CHECK_EQ(alice_feed_bytes, 0u);      // the garbler's inputs cost nothing on the wire
  // The shared seed: SHA-256("capc-gc shared labels" || sid), two constant labels first, then the inputs.
  Sha256 h;
  unsigned char sb[16];
  store_block(sb, sid_seen);
  h.update("capc-gc shared labels", 21).update(sb, 16);
  PRG shared(h.finish_block());
  std::vector<block> expect(n + 2);
  shared.random_blocks(expect.data(), n + 2);
  int bad = 0;
  for (size_t i = 0; i < n; ++i) {
    bad += !block_eq(e_alice[i], expect[i + 2]);
    bad += !block_eq(e_alice[i], xor_block(g_alice[i], abits[i] ? delta[0] : zero_block()));
    bad += !block_eq(e_bob[i], xor_block(g_bob[i], bbits[i] ? delta[0] : zero_block()));
    bad += lsb(e_alice[i]) != (lsb(g_alice[i]) ^ (abits[i] != 0));  // decodes to the bit
  }
  CHECK_EQ(bad, 0);
  // Tweaks: the second query starts where the first ended, both sides agree, a query of C = 3 draws
  // 2 per AND gate (63*3 + 128*2 + 1 = 446) plus one per output wire (3).
  for (int q = 0; q < 3; ++q) CHECK_EQ(tweaks[0][q], tweaks[1][q]);
  CHECK_EQ(tweaks[0][1] - tweaks[0][0], 2u * 446u + 3u);
  CHECK_EQ(tweaks[0][2] - tweaks[0][1], 2u * 446u + 3u);
  CHECK(tweaks[0][1] > tweaks[0][0] && tweaks[0][2] > tweaks[0][1]);
}

}  // namespace

// Half-gates: exactly two ciphertexts (32 bytes) per AND gate, nothing for XOR/NOT.
void test_gate_cost() {
  uint64_t garbler_bytes = 0;
  test::run_circuit([&](int party) {
    Bit x(true, ALICE), y(false, BOB);
    Backend& be = backend();
    auto* shp = dynamic_cast<SemiHonestParty*>(&be);
    const uint64_t before = shp->io().bytes_sent();
    const uint64_t ands_before = be.and_gates();
    Bit acc = x;
    for (int i = 0; i < 1000; ++i) acc = (acc & y) ^ x ^ !y;
    if (party == ALICE) garbler_bytes = shp->io().bytes_sent() - before;
    CHECK_EQ(be.and_gates() - ands_before, 1000u);
    bool v = acc.reveal<bool>(PUBLIC);
    CHECK_EQ(v, false);  // acc = (acc & 0) ^ 1 ^ 1 = 0
  });
  CHECK_EQ(garbler_bytes, 32000u);
}

int main(int argc, char** argv) {
  quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  test_arith();
  test_gate_cost();
  test_argmax_share();
  test_noisy_argmax();
  test_relu_share();
  test_maxpool_share();
  test_pool_bad_arguments();
  test_narrow_registers();
  test_reveal_weighted();
  test_reveal_minus_mask_fallback();
  test_session_invariants();
  return test::finish("test_circuits");
}
