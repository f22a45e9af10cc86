// hash.cpp — TCCR hash (Guo–Katz–Wang–Yu 2020) and SHA-256.
#include "capc_gc/hash.h"

#include <openssl/evp.h>

#include <cstring>

#include "capc_gc/errors.h"

namespace capc_gc {

TccrHash::TccrHash(block key) : aes_(key) {}

block TccrHash::hash(block x, block tweak) const {
  block u = x;
  aes_.encrypt(&u, 1);  // u = pi(x)
  block v = xor_block(u, tweak);
  aes_.encrypt(&v, 1);  // v = pi(pi(x) ^ i)
  return xor_block(v, u);
}

void TccrHash::hash4(const block* x, const block* tweak, block* out) const {
  alignas(16) block u[4] = {x[0], x[1], x[2], x[3]};
  aes_.encrypt4(u);
  alignas(16) block v[4];
  for (int j = 0; j < 4; ++j) v[j] = xor_block(u[j], tweak[j]);
  aes_.encrypt4(v);
  for (int j = 0; j < 4; ++j) out[j] = xor_block(v[j], u[j]);
}

void TccrHash::hash2(const block* x, const block* tweak, block* out) const {
  alignas(16) block u[2] = {x[0], x[1]};
  aes_.encrypt2(u);
  alignas(16) block v[2] = {xor_block(u[0], tweak[0]), xor_block(u[1], tweak[1])};
  aes_.encrypt2(v);
  out[0] = xor_block(v[0], u[0]);
  out[1] = xor_block(v[1], u[1]);
}

void TccrHash::hash_n(const block* x, const block* tweak, block* out, size_t n) const {
  if (aes_.tccr(x, tweak, out, n)) return;
  // In slices of 64 blocks on the stack: long enough to keep the AES pipeline full, no allocation.
  constexpr size_t kSlice = 64;
  alignas(16) block u[kSlice];
  for (size_t s = 0; s < n; s += kSlice) {
    const size_t m = n - s < kSlice ? n - s : kSlice;
    std::memcpy(u, x + s, m * sizeof(block));
    aes_.encrypt(u, m);  // u = pi(x)
    for (size_t j = 0; j < m; ++j) out[s + j] = xor_block(u[j], tweak[s + j]);
    aes_.encrypt(out + s, m);  // pi(pi(x) ^ i)
    for (size_t j = 0; j < m; ++j) out[s + j] = xor_block(out[s + j], u[j]);
  }
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    throw CryptoError("OpenSSL SHA-256 initialisation failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

Sha256& Sha256::update(const void* data, size_t n) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n) != 1) throw CryptoError("SHA-256 update failed");
  return *this;
}

Sha256& Sha256::update_u64(uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  return update(b, 8);
}

Sha256Digest Sha256::finish() {
  Sha256Digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), d.data(), &len) != 1 || len != 32)
    throw CryptoError("SHA-256 finalisation failed");
  return d;
}

block Sha256::finish_block() {
  Sha256Digest d = finish();
  return load_block(d.data());
}

}  // namespace capc_gc
