// iknp.cpp — IKNP OT extension (see iknp.h).
#include "capc_gc/iknp.h"

#include <cstring>

#include "capc_gc/base_ot.h"
#include "capc_gc/errors.h"

namespace capc_gc {

void transpose_128xn(const uint8_t* in, block* out, size_t n) {
  const size_t row_bytes = n / 8;
  auto* outb = reinterpret_cast<uint8_t*>(out);
  alignas(16) uint8_t gather[16];
  // Take a 16-row x 8-column tile: one byte from each of 16 rows. _mm_movemask_epi8 collects the top bit of
  // every byte, i.e. column 8*cb+7 of the 16 rows, as 16 bits of one output row.
  for (size_t rg = 0; rg < kKappa / 16; ++rg) {
    for (size_t cb = 0; cb < row_bytes; ++cb) {
      for (size_t k = 0; k < 16; ++k) gather[k] = in[(rg * 16 + k) * row_bytes + cb];
      block v = _mm_load_si128(reinterpret_cast<const block*>(gather));
      for (int bit = 7; bit >= 0; --bit) {
        auto m = static_cast<uint16_t>(_mm_movemask_epi8(v));
        uint8_t* dst = outb + (cb * 8 + static_cast<size_t>(bit)) * 16 + rg * 2;
        dst[0] = static_cast<uint8_t>(m);
        dst[1] = static_cast<uint8_t>(m >> 8);
        v = _mm_slli_epi64(v, 1);
      }
    }
  }
}

namespace {
size_t padded(size_t n) { return (n + 127) / 128 * 128; }
}  // namespace

void IknpCotSender::setup(IOChannel& io, PRG& prg, block sid) {
  uint8_t sb[16];
  prg.random_bytes(sb, 16);
  s_ = load_block(sb);
  for (size_t i = 0; i < kKappa; ++i) s_bits_[i] = (sb[i / 8] >> (i % 8)) & 1;
  block seeds[kKappa];
  base_ot_recv(io, prg, sid, s_bits_, kKappa, seeds);
  g_.clear();
  for (size_t i = 0; i < kKappa; ++i) g_.push_back(std::make_unique<PRG>(seeds[i]));
  ready_ = true;
}

void IknpCotSender::send_cot(IOChannel& io, const TccrHash& h, block delta, size_t n, block* zero) {
  if (!ready_) throw ProtocolError("OT extension used before its base OTs");
  if (n == 0) return;
  const size_t np = padded(n), nblk = np / 128;
  std::vector<block> u(kKappa * nblk), q(kKappa * nblk);
  io.recv_block(u.data(), u.size());
  for (size_t i = 0; i < kKappa; ++i) {
    block* qi = q.data() + i * nblk;
    g_[i]->random_blocks(qi, nblk);
    if (s_bits_[i])
      for (size_t b = 0; b < nblk; ++b) qi[b] = xor_block(qi[b], u[i * nblk + b]);
  }
  std::vector<block> rows(np);
  transpose_128xn(reinterpret_cast<const uint8_t*>(q.data()), rows.data(), np);
  std::vector<block> x1(n), tw(n), d(n);
  for (size_t j = 0; j < n; ++j) {
    tw[j] = ot_tweak(ot_index_ + j);
    x1[j] = xor_block(rows[j], s_);
  }
  h.hash_n(rows.data(), tw.data(), zero, n);
  h.hash_n(x1.data(), tw.data(), d.data(), n);
  for (size_t j = 0; j < n; ++j) d[j] = xor_block(xor_block(d[j], zero[j]), delta);
  io.send_block(d.data(), n);
  ot_index_ += n;
}

void IknpCotReceiver::setup(IOChannel& io, PRG& prg, block sid) {
  block seeds[2 * kKappa];
  base_ot_send(io, prg, sid, kKappa, seeds);
  g0_.clear();
  g1_.clear();
  for (size_t i = 0; i < kKappa; ++i) {
    g0_.push_back(std::make_unique<PRG>(seeds[2 * i]));
    g1_.push_back(std::make_unique<PRG>(seeds[2 * i + 1]));
  }
  ready_ = true;
}

void IknpCotReceiver::recv_cot(IOChannel& io, const TccrHash& h, const bool* choices, size_t n, block* out) {
  if (!ready_) throw ProtocolError("OT extension used before its base OTs");
  if (n == 0) return;
  const size_t np = padded(n), nblk = np / 128;
  std::vector<uint8_t> r(np / 8, 0);
  for (size_t j = 0; j < n; ++j) r[j / 8] |= static_cast<uint8_t>(choices[j] ? 1u << (j % 8) : 0u);
  std::vector<block> t(kKappa * nblk), u(kKappa * nblk);
  for (size_t i = 0; i < kKappa; ++i) {
    block* ti = t.data() + i * nblk;
    block* ui = u.data() + i * nblk;
    g0_[i]->random_blocks(ti, nblk);
    g1_[i]->random_blocks(ui, nblk);
    for (size_t b = 0; b < nblk; ++b) ui[b] = xor_block(xor_block(ui[b], ti[b]), load_block(r.data() + 16 * b));
  }
  io.send_block(u.data(), u.size());
  io.flush();
  std::vector<block> rows(np);
  transpose_128xn(reinterpret_cast<const uint8_t*>(t.data()), rows.data(), np);
  std::vector<block> tw(n), d(n);
  for (size_t j = 0; j < n; ++j) tw[j] = ot_tweak(ot_index_ + j);
  h.hash_n(rows.data(), tw.data(), out, n);
  io.recv_block(d.data(), n);
  for (size_t j = 0; j < n; ++j) out[j] = xor_block(out[j], and_block(bool_mask(choices[j]), d[j]));
  ot_index_ += n;
}

}  // namespace capc_gc
