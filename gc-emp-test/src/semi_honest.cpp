// semi_honest.cpp — half-gates garbling/evaluation, input and output protocols (see semi_honest.h).
#include "capc_gc/semi_honest.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "capc_gc/errors.h"

namespace capc_gc {

namespace {
thread_local Backend* tls_backend = nullptr;

block derive(block sid, const char* label, size_t len) {
  Sha256 h;
  unsigned char s[16];
  store_block(s, sid);
  h.update(label, len).update(s, 16);
  return h.finish_block();
}

// The fixed-key permutation of a session: AES under a key both parties derive from the session id.
block fixed_key(block sid) { return derive(sid, "capc-gc fixed AES key", 21); }
// The seed of the garbler's input labels and the constant labels (public to both parties).
block shared_seed(block sid) { return derive(sid, "capc-gc shared labels", 21); }

inline block tweak_block(uint64_t t) { return make_block(0x4741544500000000ULL, t); }

/// Gates per hash batch: 8 gates are 32 AES blocks per pass for the garbler, 16 for the evaluator, enough to
/// keep the AES pipeline full.
constexpr size_t kGarbleBatch = 8;
constexpr size_t kEvalBatch = 16;
/// Groups per slice of reveal_weighted (bounds its scratch memory).
constexpr size_t kWeightedSlice = 512;

/// What reveal_weighted sends per wire of a group: weight w (mod 2^O) = odd << tz; the wire's arithmetic
/// value lives on its top O - tz bits, sent in ceil((O - tz)/8) bytes per slot. Wires of weight 0 mod 2^O
/// contribute nothing and send nothing.
struct WeightPlan {
  struct Wire {
    bool active = false;
    int tz = 0, nbytes = 0;
    uint64_t odd = 0, mask = 0;
  };
  std::vector<Wire> wires;
  size_t absorb = 0;          // the first odd-weight wire: its share carries the rest of m
  size_t bytes_per_group = 0;
  size_t active = 0;
  uint64_t mod_mask = 0;
  int out_bits = 0;

  WeightPlan(const uint64_t* w, size_t g, int O) : wires(g), mod_mask(O == 64 ? ~uint64_t{0} : (uint64_t{1} << O) - 1),
                                                    out_bits(O) {
    bool found = false;
    for (size_t k = 0; k < g; ++k) {
      const uint64_t wk = w[k] & mod_mask;
      if (wk == 0) continue;
      Wire& x = wires[k];
      x.active = true;
      x.tz = __builtin_ctzll(wk);
      x.odd = wk >> x.tz;
      const int nbits = O - x.tz;
      x.nbytes = (nbits + 7) / 8;
      x.mask = nbits == 64 ? ~uint64_t{0} : (uint64_t{1} << nbits) - 1;
      bytes_per_group += 2 * static_cast<size_t>(x.nbytes);
      ++active;
      if (!found && x.tz == 0) {
        absorb = k;
        found = true;
      }
    }
    if (!found) throw InputError("reveal_weighted: no weight is odd, so the mask's low bits have no wire to ride on");
  }
  int64_t sign_extend(uint64_t v) const {
    v &= mod_mask;
    if (out_bits < 64 && ((v >> (out_bits - 1)) & 1)) v |= ~mod_mask;
    return static_cast<int64_t>(v);
  }
};

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "output tables are little-endian (x86-64)");
// n <= 8 little-endian bytes. The buffers carry 8 bytes of slack, so a full 8-byte store or load is
// always in bounds; the bytes past n are overwritten or masked off.
inline void put_bytes(uint8_t* p, uint64_t v, int n) {
  if (n == 8) {
    std::memcpy(p, &v, 8);
    return;
  }
  uint64_t old;
  std::memcpy(&old, p, 8);
  const uint64_t keep = ~uint64_t{0} << (8 * n);
  v = (v & ~keep) | (old & keep);
  std::memcpy(p, &v, 8);
}
inline uint64_t get_bytes(const uint8_t* p, int n) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return n == 8 ? v : v & ~(~uint64_t{0} << (8 * n));
}
}  // namespace

Backend* current_backend() { return tls_backend; }
void set_current_backend(Backend* b) { tls_backend = b; }

SemiHonestParty::SemiHonestParty(IOChannel& io, block sid)
    : io_(io), sid_(sid), shared_(shared_seed(sid)), hash_(fixed_key(sid)) {}

void SemiHonestParty::require_ready(const char* what) const {
  if (!ready_) throw GcError(std::string(what) + " before the session's setup (call setup() after the handshake)");
}

void SemiHonestParty::check_weighted(size_t groups, size_t g, int out_bits) const {
  require_ready("reveal_weighted");
  if (out_bits < 1 || out_bits > 64) throw InputError("reveal_weighted: out_bits must be in 1..64");
  if (g == 0 && groups != 0) throw InputError("reveal_weighted: a group needs at least one wire");
}

void SemiHonestParty::feed(block* labels, int owner, const bool* bits, size_t n) {
  if (owner != ALICE && owner != BOB) throw InputError("inputs must be owned by ALICE or BOB");
  require_ready("feed");
  if (owner == party())
    feed_own(labels, bits, n);
  else
    feed_peer(labels, n);
}

// Output decoding: value = lsb(garbler's zero-label) XOR lsb(evaluator's label). The party that learns the
// value receives the other's colour bits, packed eight to a byte.
void SemiHonestParty::reveal(bool* out, int to, const block* labels, size_t n) {
  if (to != ALICE && to != BOB && to != PUBLIC) throw InputError("reveal target must be ALICE, BOB or PUBLIC");
  const size_t nbytes = (n + 7) / 8;
  std::vector<uint8_t> mine(nbytes, 0), theirs(nbytes, 0);
  for (size_t i = 0; i < n; ++i) mine[i / 8] |= static_cast<uint8_t>(lsb(labels[i]) ? 1u << (i % 8) : 0u);
  const bool i_send = (to == PUBLIC) || (to != party());
  const bool i_learn = (to == PUBLIC) || (to == party());
  if (i_send) io_.send_data(mine.data(), nbytes);
  if (i_learn) {
    io_.recv_data(theirs.data(), nbytes);
    for (size_t i = 0; i < n; ++i) out[i] = ((mine[i / 8] ^ theirs[i / 8]) >> (i % 8)) & 1;
  } else {
    io_.flush();
  }
}

// ---------------------------------------------------------------- garbler

void Garbler::setup() {
  if (ready_) return;
  delta_ = _mm_or_si128(prg_.random_block(), make_block(0, 1));  // lsb(Delta) = 1 for point-and-permute
  ot_.setup(io_, prg_, sid_, delta_);
  // Constant wires: the evaluator holds C0 for the constant 0 and C1 for the constant 1.
  block c[2];
  shared_.random_blocks(c, 2);
  public_[0] = c[0];
  public_[1] = xor_block(c[1], delta_);
  ready_ = true;
}

block Garbler::and_gate(block a0, block b0) {
  // Half-gates (ZRE15, Fig. 2): generator half TG, evaluator half TE.
  const bool pa = lsb(a0), pb = lsb(b0);
  const uint64_t j = tweak_;
  tweak_ += 2;
  ++and_gates_;
  alignas(16) block in[4] = {a0, xor_block(a0, delta_), b0, xor_block(b0, delta_)};
  alignas(16) block tw[4] = {tweak_block(j), tweak_block(j), tweak_block(j + 1), tweak_block(j + 1)};
  alignas(16) block h[4];
  hash_.hash4(in, tw, h);
  block table[2];
  table[0] = xor_block(xor_block(h[0], h[1]), and_block(bool_mask(pb), delta_));  // TG
  block wg = xor_block(h[0], and_block(bool_mask(pa), table[0]));
  table[1] = xor_block(xor_block(h[2], h[3]), a0);  // TE
  block we = xor_block(h[2], and_block(bool_mask(pb), xor_block(table[1], a0)));
  io_.send_block(table, 2);
  return xor_block(wg, we);
}

void Garbler::and_n(const block* a, const block* b, block* out, size_t n) {
  alignas(16) block in[4 * kGarbleBatch], tw[4 * kGarbleBatch], h[4 * kGarbleBatch], table[2 * kGarbleBatch];
  for (size_t s = 0; s < n; s += kGarbleBatch) {
    const size_t m = std::min(kGarbleBatch, n - s);
    for (size_t i = 0; i < m; ++i) {
      const block a0 = a[s + i], b0 = b[s + i];
      in[4 * i] = a0;
      in[4 * i + 1] = xor_block(a0, delta_);
      in[4 * i + 2] = b0;
      in[4 * i + 3] = xor_block(b0, delta_);
      tw[4 * i] = tw[4 * i + 1] = tweak_block(tweak_);
      tw[4 * i + 2] = tw[4 * i + 3] = tweak_block(tweak_ + 1);
      tweak_ += 2;
    }
    hash_.hash_n(in, tw, h, 4 * m);
    for (size_t i = 0; i < m; ++i) {
      const block a0 = in[4 * i], b0 = in[4 * i + 2];
      const block* hi = h + 4 * i;
      const block tg = xor_block(xor_block(hi[0], hi[1]), and_block(bool_mask(lsb(b0)), delta_));
      const block wg = xor_block(hi[0], and_block(bool_mask(lsb(a0)), tg));
      const block te = xor_block(xor_block(hi[2], hi[3]), a0);
      const block we = xor_block(hi[2], and_block(bool_mask(lsb(b0)), xor_block(te, a0)));
      table[2 * i] = tg;
      table[2 * i + 1] = te;
      out[s + i] = xor_block(wg, we);
    }
    io_.send_block(table, 2 * m);
  }
  and_gates_ += n;
}

void Garbler::feed_own(block* labels, const bool* bits, size_t n) {
  shared_.random_blocks(labels, n);  // the evaluator's labels
  for (size_t i = 0; i < n; ++i) labels[i] = xor_block(labels[i], and_block(bool_mask(bits[i]), delta_));
}

void Garbler::feed_peer(block* labels, size_t n) { ot_.send_cot(io_, n, labels); }

void Garbler::reveal_weighted(const block* labels, size_t groups, const uint64_t* weights, size_t g, int out_bits,
                              const int64_t* m, int64_t* /*y*/) {
  check_weighted(groups, g, out_bits);
  if (groups == 0) return;
  if (m == nullptr) throw InputError("reveal_weighted: the garbler must pass the masks");
  const WeightPlan plan(weights, g, out_bits);
  std::vector<uint8_t> wire;
  std::vector<uint64_t> share(g);
  for (size_t s = 0; s < groups; s += kWeightedSlice) {
    const size_t ns = std::min(kWeightedSlice, groups - s), cnt = ns * plan.active;
    hin_.resize(2 * cnt);
    htw_.resize(2 * cnt);
    hout_.resize(2 * cnt);
    size_t c = 0;
    for (size_t j = s; j < s + ns; ++j)
      for (size_t k = 0; k < g; ++k) {
        if (!plan.wires[k].active) continue;
        const block k0 = labels[j * g + k];
        hin_[2 * c] = k0;
        hin_[2 * c + 1] = xor_block(k0, delta_);
        htw_[2 * c] = htw_[2 * c + 1] = tweak_block(tweak_++);
        ++c;
      }
    hash_.hash_n(hin_.data(), htw_.data(), hout_.data(), 2 * cnt);
    std::vector<block> rnd((cnt + 1) / 2);
    prg_.random_blocks(rnd.data(), rnd.size());
    const auto* rw = reinterpret_cast<const uint64_t*>(rnd.data());
    wire.assign(ns * plan.bytes_per_group + 8, 0);
    uint8_t* p = wire.data();
    c = 0;
    for (size_t j = s; j < s + ns; ++j) {
      uint64_t acc = 0;  // sum of the other wires' shares, m_k << tz_k
      size_t r = c;
      for (size_t k = 0; k < g; ++k) {
        const WeightPlan::Wire& x = plan.wires[k];
        if (!x.active) continue;
        if (k != plan.absorb) {
          share[k] = rw[r] & x.mask;
          acc += share[k] << x.tz;
        }
        ++r;
      }
      share[plan.absorb] = (static_cast<uint64_t>(m[j]) - acc) & plan.mod_mask;
      for (size_t k = 0; k < g; ++k) {
        const WeightPlan::Wire& x = plan.wires[k];
        if (!x.active) continue;
        const uint64_t val0 = (uint64_t{0} - share[k]) & x.mask, val1 = (x.odd - share[k]) & x.mask;
        const bool s0 = lsb(hin_[2 * c]);  // the slot of the zero-label is its colour
        put_bytes(p + (s0 ? x.nbytes : 0), low64(hout_[2 * c]) ^ val0, x.nbytes);
        put_bytes(p + (s0 ? 0 : x.nbytes), low64(hout_[2 * c + 1]) ^ val1, x.nbytes);
        p += 2 * x.nbytes;
        ++c;
      }
    }
    io_.send_data(wire.data(), wire.size() - 8);
  }
}

// ---------------------------------------------------------------- evaluator

void Evaluator::setup() {
  if (ready_) return;
  ot_.setup(io_, prg_, sid_);
  shared_.random_blocks(public_, 2);
  ready_ = true;
}

block Evaluator::and_gate(block a, block b) {
  const uint64_t j = tweak_;
  tweak_ += 2;
  ++and_gates_;
  block table[2];
  io_.recv_block(table, 2);
  alignas(16) block in[2] = {a, b};
  alignas(16) block tw[2] = {tweak_block(j), tweak_block(j + 1)};
  alignas(16) block h[2];
  hash_.hash2(in, tw, h);
  block wg = xor_block(h[0], and_block(bool_mask(lsb(a)), table[0]));
  block we = xor_block(h[1], and_block(bool_mask(lsb(b)), xor_block(table[1], a)));
  return xor_block(wg, we);
}

void Evaluator::and_n(const block* a, const block* b, block* out, size_t n) {
  alignas(16) block in[2 * kEvalBatch], tw[2 * kEvalBatch], h[2 * kEvalBatch], table[2 * kEvalBatch];
  for (size_t s = 0; s < n; s += kEvalBatch) {
    const size_t m = std::min(kEvalBatch, n - s);
    io_.recv_block(table, 2 * m);
    for (size_t i = 0; i < m; ++i) {
      in[2 * i] = a[s + i];
      in[2 * i + 1] = b[s + i];
      tw[2 * i] = tweak_block(tweak_);
      tw[2 * i + 1] = tweak_block(tweak_ + 1);
      tweak_ += 2;
    }
    hash_.hash_n(in, tw, h, 2 * m);
    for (size_t i = 0; i < m; ++i) {
      const block av = in[2 * i], bv = in[2 * i + 1];
      const block wg = xor_block(h[2 * i], and_block(bool_mask(lsb(av)), table[2 * i]));
      const block we = xor_block(h[2 * i + 1], and_block(bool_mask(lsb(bv)), xor_block(table[2 * i + 1], av)));
      out[s + i] = xor_block(wg, we);
    }
  }
  and_gates_ += n;
}

void Evaluator::feed_own(block* labels, const bool* bits, size_t n) { ot_.recv_cot(io_, bits, n, labels); }

void Evaluator::feed_peer(block* labels, size_t n) { shared_.random_blocks(labels, n); }

void Evaluator::reveal_weighted(const block* labels, size_t groups, const uint64_t* weights, size_t g, int out_bits,
                                const int64_t* /*m*/, int64_t* y) {
  check_weighted(groups, g, out_bits);
  if (groups == 0) return;
  if (y == nullptr) throw InputError("reveal_weighted: the evaluator must pass an output buffer");
  const WeightPlan plan(weights, g, out_bits);
  std::vector<uint8_t> wire;
  for (size_t s = 0; s < groups; s += kWeightedSlice) {
    const size_t ns = std::min(kWeightedSlice, groups - s), cnt = ns * plan.active;
    hin_.resize(cnt);
    htw_.resize(cnt);
    hout_.resize(cnt);
    size_t c = 0;
    for (size_t j = s; j < s + ns; ++j)
      for (size_t k = 0; k < g; ++k) {
        if (!plan.wires[k].active) continue;
        hin_[c] = labels[j * g + k];
        htw_[c] = tweak_block(tweak_++);
        ++c;
      }
    hash_.hash_n(hin_.data(), htw_.data(), hout_.data(), cnt);
    wire.resize(ns * plan.bytes_per_group + 8);
    io_.recv_data(wire.data(), wire.size() - 8);
    const uint8_t* p = wire.data();
    c = 0;
    for (size_t j = s; j < s + ns; ++j) {
      uint64_t acc = 0;
      for (size_t k = 0; k < g; ++k) {
        const WeightPlan::Wire& x = plan.wires[k];
        if (!x.active) continue;
        const bool slot = lsb(hin_[c]);
        const uint64_t ct = get_bytes(p + (slot ? x.nbytes : 0), x.nbytes);
        acc += ((ct ^ low64(hout_[c])) & x.mask) << x.tz;
        p += 2 * x.nbytes;
        ++c;
      }
      y[j] = plan.sign_extend(acc);
    }
  }
}

std::unique_ptr<SemiHonestParty> make_party(int party, IOChannel& io, block sid) {
  if (party == ALICE) return std::make_unique<Garbler>(io, sid);
  if (party == BOB) return std::make_unique<Evaluator>(io, sid);
  throw InputError("party must be 1 (ALICE, garbler) or 2 (BOB, evaluator), got " + std::to_string(party));
}

}  // namespace capc_gc
