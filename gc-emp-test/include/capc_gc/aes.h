// aes.h — AES-128 encryption of blocks (FIPS-197), with a run-time choice between AES-NI and OpenSSL.
//
// The AES-NI code is compiled with per-function target attributes, not -maes/-march, so the library runs on
// any x86-64: cpuid decides at run time whether it is used, and whether the wider VAES instructions (4 or 2
// blocks per instruction) are. CAPC_GC_NO_AESNI=1 forces the OpenSSL path, CAPC_GC_NO_VAES=1 the 128-bit
// AES-NI path (the tests run all of them and check that they agree).
#pragma once
#include <cstddef>
#include <memory>

#include "capc_gc/block.h"

namespace capc_gc {

/// True when this CPU has AES-NI and the AES-NI path is in use.
bool aesni_enabled();
/// The AES code path in use: "VAES-512", "VAES-256" (several blocks per instruction), "AES-NI" or "OpenSSL".
const char* aes_path();

/// An expanded AES-128 key that encrypts blocks in ECB mode (the building block of the PRG and hashes).
class AES128 {
 public:
  explicit AES128(block key);
  ~AES128();
  AES128(const AES128&) = delete;
  AES128& operator=(const AES128&) = delete;
  AES128(AES128&&) noexcept;
  AES128& operator=(AES128&&) noexcept;

  /// Encrypt n blocks in place.
  void encrypt(block* data, size_t n) const;
  /// out[j] = E(E(x[j]) ^ tw[j]) ^ E(x[j]) (the TCCR hash of hash.h) in one pass with E(x) kept in registers;
  /// out must not overlap x or tw. Returns false (and does nothing) on the OpenSSL path.
  bool tccr(const block* x, const block* tw, block* out, size_t n) const;
  /// Encrypt exactly 4 (or 2) blocks in place; the hot path of half-gates garbling.
  void encrypt4(block* data) const;
  void encrypt2(block* data) const;

 private:
  alignas(16) block round_keys_[11];
  struct OsslState;
  std::unique_ptr<OsslState> ossl_;  // null on the AES-NI path
};

}  // namespace capc_gc
