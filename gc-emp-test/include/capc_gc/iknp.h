// iknp.h — IKNP oblivious-transfer extension with correlated-OT output, keeping its state across queries.
//
// Follows Y. Ishai, J. Kilian, K. Nissim, E. Petrank, "Extending Oblivious Transfers Efficiently",
// CRYPTO 2003 (semi-honest protocol), with the correlation-robust hash replaced by the fixed-key TCCR hash
// (Guo–Katz–Wang–Yu 2020) and the correlated-OT output of Asharov, Lindell, Schneider, Zohner, "More
// Efficient Oblivious Transfer and Extensions for Faster Secure Computation", CCS 2013.
//
// Setup (once per session): 128 base OTs with the roles reversed — the extension receiver sends seed pairs
// (k_i^0, k_i^1), the extension sender picks s in {0,1}^128 and learns k_i^{s_i}.
// Extension of n OTs with choice bits r: the receiver sends u_i = G(k_i^0) ^ G(k_i^1) ^ r for each
// column i; the sender computes q_i = G(k_i^{s_i}) ^ s_i·u_i. Row-wise, q_j = t_j ^ r_j·s with
// t_j = rows of G(k_i^0). G is AES-CTR under each seed; its counter persists, so later queries keep
// drawing fresh stream positions and never repeat the base OTs.
// Correlated OT with offset Delta: the sender's message pair is (x_j, x_j ^ Delta) with x_j = H(q_j, j); it
// sends d_j = H(q_j, j) ^ H(q_j ^ s, j) ^ Delta, and the receiver outputs H(t_j, j) ^ r_j·d_j.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "capc_gc/block.h"
#include "capc_gc/hash.h"
#include "capc_gc/io_channel.h"
#include "capc_gc/prg.h"

namespace capc_gc {

constexpr size_t kKappa = 128;

/// Transpose a 128 x n bit matrix (128 rows of n/8 bytes, bit j of a row at byte j/8, bit j%8) into n rows of
/// 128 bits (blocks, bit i at byte i/8, bit i%8). n must be a multiple of 8.
void transpose_128xn(const uint8_t* in, block* out, size_t n);

/// The garbler's side (OT-extension sender).
class IknpCotSender {
 public:
  bool ready() const { return ready_; }
  void setup(IOChannel& io, PRG& prg, block session_id);
  /// Correlated OT: zero[j] is the message for choice 0; the message for choice 1 is zero[j] ^ delta.
  void send_cot(IOChannel& io, const TccrHash& h, block delta, size_t n, block* zero);

 private:
  bool ready_ = false;
  block s_ = zero_block();
  bool s_bits_[kKappa] = {};
  std::vector<std::unique_ptr<PRG>> g_;  // G(k_i^{s_i})
  uint64_t ot_index_ = 0;
};

/// The evaluator's side (OT-extension receiver).
class IknpCotReceiver {
 public:
  bool ready() const { return ready_; }
  void setup(IOChannel& io, PRG& prg, block session_id);
  /// out[j] = zero[j] ^ choices[j]·delta as held by the sender.
  void recv_cot(IOChannel& io, const TccrHash& h, const bool* choices, size_t n, block* out);

 private:
  bool ready_ = false;
  std::vector<std::unique_ptr<PRG>> g0_, g1_;
  uint64_t ot_index_ = 0;
};

/// Tweak for OT j: domain-separated from the garbling tweaks by the high word.
inline block ot_tweak(uint64_t j) { return make_block(0x4f54000000000000ULL, j); }

}  // namespace capc_gc
