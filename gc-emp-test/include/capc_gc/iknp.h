// iknp.h — IKNP oblivious-transfer extension with correlated-OT output under the session's Delta, keeping its
// state across queries.
//
// Follows Y. Ishai, J. Kilian, K. Nissim, E. Petrank, "Extending Oblivious Transfers Efficiently",
// CRYPTO 2003 (semi-honest protocol), in the correlated-OT form of Asharov, Lindell, Schneider, Zohner,
// "More Efficient Oblivious Transfer and Extensions for Faster Secure Computation", CCS 2013, where the
// sender's secret s of the base OTs is itself the free-XOR offset Delta (as emp-ot does for emp-sh2pc).
//
// Setup (once per session): 128 base OTs with the roles reversed — the extension receiver sends seed pairs
// (k_i^0, k_i^1), the extension sender, whose choice bits are the bits of Delta, learns k_i^{Delta_i}.
// Extension of n OTs with choice bits r: the receiver sends u_i = G(k_i^0) ^ G(k_i^1) ^ r for each column i
// (16 bytes per OT, n rounded up to a multiple of 128); the sender computes q_i = G(k_i^{Delta_i}) ^ Delta_i·u_i.
// Row-wise, q_j = t_j ^ r_j·Delta with t_j the rows of G(k_i^0): the sender's zero-label of the receiver's
// input wire j is q_j and the receiver holds t_j, the label of its bit r_j. Nothing goes back to the
// receiver, so there is no per-OT correction. The receiver knows both seeds of every column, but not which
// one the sender holds (the base OTs hide Delta); lsb(Delta) = 1 is public (point-and-permute), as in emp.
// G is AES-CTR under each seed; its counter persists, so later queries draw fresh stream positions and
// never repeat the base OTs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "capc_gc/block.h"
#include "capc_gc/io_channel.h"
#include "capc_gc/prg.h"

namespace capc_gc {

constexpr size_t kKappa = 128;

/// Transpose a 128 x n bit matrix (128 rows of n/8 bytes, bit j of a row at byte j/8, bit j%8) into n rows of
/// 128 bits (blocks, bit i at byte i/8, bit i%8). n must be a multiple of 128.
/// Uses AVX2 (32 rows per step) when the CPU has it, else SSE2.
void transpose_128xn(const uint8_t* in, block* out, size_t n);
namespace detail {
/// The SSE2 path, always available (exposed so that the tests check it on AVX2 machines too).
void transpose_128xn_sse2(const uint8_t* in, block* out, size_t n);
}  // namespace detail

/// The garbler's side (OT-extension sender).
class IknpCotSender {
 public:
  bool ready() const { return ready_; }
  /// Base OTs with the bits of delta as choice bits; delta's lsb must be 1.
  void setup(IOChannel& io, PRG& prg, block session_id, block delta);
  /// Correlated OT: zero[j] is the zero-label; the receiver holds zero[j] ^ r_j·delta.
  void send_cot(IOChannel& io, size_t n, block* zero);

 private:
  bool ready_ = false;
  bool s_bits_[kKappa] = {};
  std::vector<std::unique_ptr<PRG>> g_;  // G(k_i^{s_i})
  std::vector<block> u_, q_;             // scratch, kept between calls
};

/// The evaluator's side (OT-extension receiver).
class IknpCotReceiver {
 public:
  bool ready() const { return ready_; }
  void setup(IOChannel& io, PRG& prg, block session_id);
  /// out[j] = zero[j] ^ choices[j]·delta as held by the sender. Only sends (u); never waits for the sender.
  void recv_cot(IOChannel& io, const bool* choices, size_t n, block* out);

 private:
  bool ready_ = false;
  std::vector<std::unique_ptr<PRG>> g0_, g1_;
  std::vector<block> t_, u_;
  std::vector<uint8_t> r_;
};

}  // namespace capc_gc
