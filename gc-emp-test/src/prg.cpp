// prg.cpp — OS entropy and the AES-CTR PRG.
#include "capc_gc/prg.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "capc_gc/errors.h"

namespace capc_gc {

void os_random_bytes(void* buf, size_t n) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw CryptoError(std::string("getrandom failed: ") + std::strerror(errno));
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

namespace {
block os_seed() {
  unsigned char s[16];
  os_random_bytes(s, sizeof s);
  return load_block(s);
}
}  // namespace

PRG::PRG() : aes_(os_seed()) {}
PRG::PRG(block seed) : aes_(seed) {}

void PRG::random_blocks(block* out, size_t n) {
  block c = make_block(0, counter_);
  const block one = make_block(0, 1);
  for (size_t i = 0; i < n; ++i) {
    out[i] = c;
    c = _mm_add_epi64(c, one);
  }
  counter_ += n;
  aes_.encrypt(out, n);
}

block PRG::random_block() {
  block b;
  random_blocks(&b, 1);
  return b;
}

void PRG::random_bytes(void* out, size_t n) {
  size_t nb = (n + 15) / 16;
  std::vector<block> tmp(nb);
  random_blocks(tmp.data(), nb);
  std::memcpy(out, tmp.data(), n);
}

}  // namespace capc_gc
