// semi_honest.cpp — half-gates garbling/evaluation, input and output protocols (see semi_honest.h).
#include "capc_gc/semi_honest.h"

#include <string>
#include <vector>

#include "capc_gc/errors.h"

namespace capc_gc {

namespace {
thread_local Backend* tls_backend = nullptr;

// The fixed-key permutation of a session: AES under a key both parties derive from the session id.
block fixed_key(block sid) {
  Sha256 h;
  unsigned char s[16];
  store_block(s, sid);
  h.update("capc-gc fixed AES key", 21).update(s, 16);
  return h.finish_block();
}

inline block gate_tweak(uint64_t t) { return make_block(0x4741544500000000ULL, t); }
}  // namespace

Backend* current_backend() { return tls_backend; }
void set_current_backend(Backend* b) { tls_backend = b; }

SemiHonestParty::SemiHonestParty(IOChannel& io, block sid) : io_(io), sid_(sid), hash_(fixed_key(sid)) {}

void SemiHonestParty::feed(block* labels, int owner, const bool* bits, size_t n) {
  if (owner != ALICE && owner != BOB) throw InputError("inputs must be owned by ALICE or BOB");
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
  for (size_t i = 0; i < n; ++i) mine[i / 8] |= static_cast<uint8_t>(colour(labels[i]) ? 1u << (i % 8) : 0u);
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

void Garbler::begin_query() {
  delta_ = prg_.random_block();
  delta_ = _mm_or_si128(delta_, make_block(0, 1));  // lsb(Delta) = 1 for point-and-permute
  // Constant wires: the evaluator holds P0 for the constant 0 and P1 ^ Delta for the constant 1.
  block p[2];
  prg_.random_blocks(p, 2);
  public_[0] = p[0];
  public_[1] = p[1];
  block send[2] = {p[0], xor_block(p[1], delta_)};
  io_.send_block(send, 2);
}

block Garbler::and_gate(block a0, block b0) {
  // Half-gates (ZRE15, Fig. 2): generator half TG, evaluator half TE.
  const bool pa = lsb(a0), pb = lsb(b0);
  const uint64_t j = gate_index_;
  gate_index_ += 2;
  ++and_gates_;
  alignas(16) block in[4] = {a0, xor_block(a0, delta_), b0, xor_block(b0, delta_)};
  alignas(16) block tw[4] = {gate_tweak(j), gate_tweak(j), gate_tweak(j + 1), gate_tweak(j + 1)};
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

void Garbler::feed_own(block* labels, const bool* bits, size_t n) {
  prg_.random_blocks(labels, n);
  std::vector<block> send(n);
  for (size_t i = 0; i < n; ++i) send[i] = xor_block(labels[i], and_block(bool_mask(bits[i]), delta_));
  io_.send_block(send.data(), n);
}

void Garbler::feed_peer(block* labels, size_t n) {
  if (!ot_.ready()) ot_.setup(io_, prg_, sid_);
  ot_.send_cot(io_, hash_, delta_, n, labels);
}

// ---------------------------------------------------------------- evaluator

void Evaluator::begin_query() { io_.recv_block(public_, 2); }

block Evaluator::and_gate(block a, block b) {
  const uint64_t j = gate_index_;
  gate_index_ += 2;
  ++and_gates_;
  block table[2];
  io_.recv_block(table, 2);
  alignas(16) block in[2] = {a, b};
  alignas(16) block tw[2] = {gate_tweak(j), gate_tweak(j + 1)};
  alignas(16) block h[2];
  hash_.hash2(in, tw, h);
  block wg = xor_block(h[0], and_block(bool_mask(lsb(a)), table[0]));
  block we = xor_block(h[1], and_block(bool_mask(lsb(b)), xor_block(table[1], a)));
  return xor_block(wg, we);
}

void Evaluator::feed_own(block* labels, const bool* bits, size_t n) {
  if (!ot_.ready()) ot_.setup(io_, prg_, sid_);
  ot_.recv_cot(io_, hash_, bits, n, labels);
}

void Evaluator::feed_peer(block* labels, size_t n) { io_.recv_block(labels, n); }

std::unique_ptr<SemiHonestParty> make_party(int party, IOChannel& io, block sid) {
  if (party == ALICE) return std::make_unique<Garbler>(io, sid);
  if (party == BOB) return std::make_unique<Evaluator>(io, sid);
  throw InputError("party must be 1 (ALICE, garbler) or 2 (BOB, evaluator), got " + std::to_string(party));
}

}  // namespace capc_gc
