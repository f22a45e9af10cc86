// hash.h — the hashes: a fixed-key-AES tweakable correlation-robust hash for garbling and OT extension,
// and SHA-256 (OpenSSL) for base OT key derivation and session ids.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "capc_gc/aes.h"
#include "capc_gc/block.h"

namespace capc_gc {

/// Tweakable correlation-robust hash from a fixed-key permutation pi = AES_k:
///     H(x, i) = pi(pi(x) XOR i) XOR pi(x)
/// This is the TCCR construction of Guo, Katz, Wang, Yu, "Efficient and Secure Multiparty Computation from
/// Fixed-Key Block Ciphers", IEEE S&P 2020 (Section 7.3), which they prove sufficient for half-gates garbling
/// (tweak = gate index) and for IKNP-style OT extension (tweak = OT index). The key k is public; capc
/// derives it from the session id so that each session uses a fresh permutation.
class TccrHash {
 public:
  explicit TccrHash(block key);
  block hash(block x, block tweak) const;
  /// out[j] = H(x[j], tweak[j]) for j < 4 (pipelined AES).
  void hash4(const block* x, const block* tweak, block* out) const;
  void hash2(const block* x, const block* tweak, block* out) const;
  /// out[j] = H(x[j], tweak[j]) for any n; out must not overlap x or tweak.
  void hash_n(const block* x, const block* tweak, block* out, size_t n) const;

 private:
  AES128 aes_;
};

using Sha256Digest = std::array<uint8_t, 32>;

/// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256& update(const void* data, size_t n);
  Sha256& update_u64(uint64_t v);  // little-endian
  Sha256Digest finish();
  /// First 16 bytes of the digest as a block.
  block finish_block();

 private:
  void* ctx_;
};

}  // namespace capc_gc
