// iknp.cpp — IKNP OT extension (see iknp.h).
#include "capc_gc/iknp.h"

#include <immintrin.h>

#include <cstring>

#include "capc_gc/base_ot.h"
#include "capc_gc/errors.h"

namespace capc_gc {

namespace {

// Four rounds of "unpack the pair (x_j, x_j+8) into (lo, hi) at (2j, 2j+1)" transpose a 16 x 16 byte
// matrix: each round rotates the four bits of (vector index, byte position) by one, so after four the row
// and column indices have swapped. Per 128-bit lane for the 256-bit version.
inline void transpose16x16_sse2(block* x) {
  block y[16];
  for (int round = 0; round < 4; ++round) {
    for (int j = 0; j < 8; ++j) {
      y[2 * j] = _mm_unpacklo_epi8(x[j], x[j + 8]);
      y[2 * j + 1] = _mm_unpackhi_epi8(x[j], x[j + 8]);
    }
    for (int j = 0; j < 16; ++j) x[j] = y[j];
  }
}

// 16 rows at a time: load 16 bytes (128 columns) of each row, transpose, then each byte column gives 8
// output rows of 16 bits via movemask (the top bit of every byte, shifting left in between).
}  // namespace

void detail::transpose_128xn_sse2(const uint8_t* in, block* out_blocks, size_t n) {
  auto* out = reinterpret_cast<uint8_t*>(out_blocks);
  const size_t row_bytes = n / 8;
  for (size_t rg = 0; rg < kKappa / 16; ++rg) {
    const uint8_t* base = in + rg * 16 * row_bytes;
    for (size_t cc = 0; cc < row_bytes; cc += 16) {
      block x[16];
      for (size_t k = 0; k < 16; ++k) x[k] = _mm_loadu_si128(reinterpret_cast<const block*>(base + k * row_bytes + cc));
      transpose16x16_sse2(x);
      for (size_t c = 0; c < 16; ++c) {
        block v = x[c];
        for (int bit = 7; bit >= 0; --bit) {
          const auto m = static_cast<uint16_t>(_mm_movemask_epi8(v));
          std::memcpy(out + ((cc + c) * 8 + static_cast<size_t>(bit)) * 16 + rg * 2, &m, 2);
          v = _mm_slli_epi64(v, 1);
        }
      }
    }
  }
}

namespace {

__attribute__((target("avx2"))) void transpose_avx2(const uint8_t* in, uint8_t* out, size_t n) {
  const size_t row_bytes = n / 8;
  for (size_t rg = 0; rg < kKappa / 32; ++rg) {
    const uint8_t* base = in + rg * 32 * row_bytes;
    for (size_t cc = 0; cc < row_bytes; cc += 16) {
      __m256i x[16], y[16];
      for (size_t k = 0; k < 16; ++k)
        x[k] = _mm256_loadu2_m128i(reinterpret_cast<const block*>(base + (k + 16) * row_bytes + cc),
                                   reinterpret_cast<const block*>(base + k * row_bytes + cc));
      for (int round = 0; round < 4; ++round) {
        for (int j = 0; j < 8; ++j) {
          y[2 * j] = _mm256_unpacklo_epi8(x[j], x[j + 8]);
          y[2 * j + 1] = _mm256_unpackhi_epi8(x[j], x[j + 8]);
        }
        for (int j = 0; j < 16; ++j) x[j] = y[j];
      }
      for (size_t c = 0; c < 16; ++c) {
        __m256i v = x[c];
        for (int bit = 7; bit >= 0; --bit) {
          const auto m = static_cast<uint32_t>(_mm256_movemask_epi8(v));
          std::memcpy(out + ((cc + c) * 8 + static_cast<size_t>(bit)) * 16 + rg * 4, &m, 4);
          v = _mm256_slli_epi64(v, 1);
        }
      }
    }
  }
}

bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
const bool kAvx2 = detect_avx2();

}  // namespace

void transpose_128xn(const uint8_t* in, block* out, size_t n) {
  if (n % 128 != 0) throw GcError("transpose_128xn: n must be a multiple of 128");
  auto* outb = reinterpret_cast<uint8_t*>(out);
  if (kAvx2)
    transpose_avx2(in, outb, n);
  else
    detail::transpose_128xn_sse2(in, out, n);
}

namespace {
size_t padded(size_t n) { return (n + 127) / 128 * 128; }
}  // namespace

void IknpCotSender::setup(IOChannel& io, PRG& prg, block sid, block delta) {
  if (!lsb(delta)) throw GcError("IKNP setup: lsb(Delta) must be 1 (point-and-permute)");
  uint8_t sb[16];
  store_block(sb, delta);
  for (size_t i = 0; i < kKappa; ++i) s_bits_[i] = (sb[i / 8] >> (i % 8)) & 1;
  block seeds[kKappa];
  base_ot_recv(io, prg, sid, s_bits_, kKappa, seeds);
  g_.clear();
  for (size_t i = 0; i < kKappa; ++i) g_.push_back(std::make_unique<PRG>(seeds[i]));
  ready_ = true;
}

void IknpCotSender::send_cot(IOChannel& io, size_t n, block* zero) {
  if (!ready_) throw ProtocolError("OT extension used before its base OTs");
  if (n == 0) return;
  const size_t np = padded(n), nblk = np / 128;
  u_.resize(kKappa * nblk);
  q_.resize(kKappa * nblk);
  io.recv_block(u_.data(), u_.size());
  for (size_t i = 0; i < kKappa; ++i) {
    block* qi = q_.data() + i * nblk;
    g_[i]->random_blocks(qi, nblk);
    if (s_bits_[i])
      for (size_t b = 0; b < nblk; ++b) qi[b] = xor_block(qi[b], u_[i * nblk + b]);
  }
  if (np == n) {
    transpose_128xn(reinterpret_cast<const uint8_t*>(q_.data()), zero, np);
  } else {
    std::vector<block> rows(np);
    transpose_128xn(reinterpret_cast<const uint8_t*>(q_.data()), rows.data(), np);
    std::memcpy(zero, rows.data(), n * sizeof(block));
  }
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

void IknpCotReceiver::recv_cot(IOChannel& io, const bool* choices, size_t n, block* out) {
  if (!ready_) throw ProtocolError("OT extension used before its base OTs");
  if (n == 0) return;
  const size_t np = padded(n), nblk = np / 128;
  // Padding choice bits are 0: the sender then learns G(k^{1-s}) at those stream positions, which are
  // never used again (the counters move on).
  r_.assign(np / 8, 0);
  for (size_t j = 0; j < n; ++j) r_[j / 8] |= static_cast<uint8_t>(choices[j] ? 1u << (j % 8) : 0u);
  t_.resize(kKappa * nblk);
  u_.resize(kKappa * nblk);
  for (size_t i = 0; i < kKappa; ++i) {
    block* ti = t_.data() + i * nblk;
    block* ui = u_.data() + i * nblk;
    g0_[i]->random_blocks(ti, nblk);
    g1_[i]->random_blocks(ui, nblk);
    for (size_t b = 0; b < nblk; ++b) ui[b] = xor_block(xor_block(ui[b], ti[b]), load_block(r_.data() + 16 * b));
  }
  io.send_block(u_.data(), u_.size());
  if (np == n) {
    transpose_128xn(reinterpret_cast<const uint8_t*>(t_.data()), out, np);
  } else {
    std::vector<block> rows(np);
    transpose_128xn(reinterpret_cast<const uint8_t*>(t_.data()), rows.data(), np);
    std::memcpy(out, rows.data(), n * sizeof(block));
  }
}

}  // namespace capc_gc
