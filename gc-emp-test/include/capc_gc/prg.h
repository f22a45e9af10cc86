// prg.h — pseudo-random generator: AES-128 in counter mode, keyed from OS entropy (getrandom) or a seed.
#pragma once
#include <cstddef>
#include <cstdint>

#include "capc_gc/aes.h"
#include "capc_gc/block.h"

namespace capc_gc {

/// Fill buf with n bytes from the operating system's CSPRNG (getrandom(2)); throws CryptoError on failure.
void os_random_bytes(void* buf, size_t n);

/// AES-CTR PRG: output block i is AES_k(i). Never reuses a counter value for one key.
class PRG {
 public:
  /// Keyed from OS entropy.
  PRG();
  /// Keyed with a given seed (deterministic; used by OT extension, where both sides expand the same seed).
  explicit PRG(block seed);

  void random_blocks(block* out, size_t n);
  void random_bytes(void* out, size_t n);
  block random_block();

 private:
  AES128 aes_;
  uint64_t counter_ = 0;
};

}  // namespace capc_gc
