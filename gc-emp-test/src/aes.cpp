// aes.cpp — AES-128 (FIPS-197) with an AES-NI path selected at run time and an OpenSSL fallback.
#include "capc_gc/aes.h"

#include <openssl/evp.h>
#include <wmmintrin.h>

#include <cstdlib>
#include <utility>

#include "capc_gc/errors.h"

namespace capc_gc {

namespace {

bool detect_aesni() {
  const char* off = std::getenv("CAPC_GC_NO_AESNI");
  if (off != nullptr && off[0] != '\0' && off[0] != '0') return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2");
}

const bool kUseAesni = detect_aesni();

// One step of the AES-128 key schedule (FIPS-197 Section 5.2) with AESKEYGENASSIST.
__attribute__((target("aes,sse2"))) inline block expand_step(block key, block assist) {
  assist = _mm_shuffle_epi32(assist, 0xff);
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  return _mm_xor_si128(key, assist);
}

__attribute__((target("aes,sse2"))) void aesni_expand(block key, block* rk) {
  rk[0] = key;
  // The round constant must be an immediate, hence the unrolled schedule.
  rk[1] = expand_step(rk[0], _mm_aeskeygenassist_si128(rk[0], 0x01));
  rk[2] = expand_step(rk[1], _mm_aeskeygenassist_si128(rk[1], 0x02));
  rk[3] = expand_step(rk[2], _mm_aeskeygenassist_si128(rk[2], 0x04));
  rk[4] = expand_step(rk[3], _mm_aeskeygenassist_si128(rk[3], 0x08));
  rk[5] = expand_step(rk[4], _mm_aeskeygenassist_si128(rk[4], 0x10));
  rk[6] = expand_step(rk[5], _mm_aeskeygenassist_si128(rk[5], 0x20));
  rk[7] = expand_step(rk[6], _mm_aeskeygenassist_si128(rk[6], 0x40));
  rk[8] = expand_step(rk[7], _mm_aeskeygenassist_si128(rk[7], 0x80));
  rk[9] = expand_step(rk[8], _mm_aeskeygenassist_si128(rk[8], 0x1b));
  rk[10] = expand_step(rk[9], _mm_aeskeygenassist_si128(rk[9], 0x36));
}

// Encrypt N blocks with interleaved rounds so the AES unit's pipeline stays full.
template <int N>
__attribute__((target("aes,sse2"))) inline void aesni_encrypt_fixed(const block* rk, block* d) {
  for (int j = 0; j < N; ++j) d[j] = _mm_xor_si128(d[j], rk[0]);
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) d[j] = _mm_aesenc_si128(d[j], rk[r]);
  for (int j = 0; j < N; ++j) d[j] = _mm_aesenclast_si128(d[j], rk[10]);
}

__attribute__((target("aes,sse2"))) void aesni_encrypt(const block* rk, block* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) aesni_encrypt_fixed<8>(rk, d + i);
  for (; i < n; ++i) aesni_encrypt_fixed<1>(rk, d + i);
}

}  // namespace

bool aesni_enabled() { return kUseAesni; }

struct AES128::OsslState {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~OsslState() { EVP_CIPHER_CTX_free(ctx); }
};

AES128::AES128(block key) {
  if (kUseAesni) {
    aesni_expand(key, round_keys_);
    return;
  }
  ossl_ = std::make_unique<OsslState>();
  ossl_->ctx = EVP_CIPHER_CTX_new();
  unsigned char raw[16];
  store_block(raw, key);
  if (ossl_->ctx == nullptr ||
      EVP_EncryptInit_ex(ossl_->ctx, EVP_aes_128_ecb(), nullptr, raw, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ossl_->ctx, 0) != 1)
    throw CryptoError("OpenSSL AES-128-ECB initialisation failed");
}

AES128::~AES128() = default;
AES128::AES128(AES128&&) noexcept = default;
AES128& AES128::operator=(AES128&&) noexcept = default;

void AES128::encrypt(block* data, size_t n) const {
  if (!ossl_) {
    aesni_encrypt(round_keys_, data, n);
    return;
  }
  auto* p = reinterpret_cast<unsigned char*>(data);
  // EVP takes an int length; stay well below INT_MAX per call.
  const size_t chunk = size_t{1} << 20;
  for (size_t off = 0; off < n; off += chunk) {
    size_t cnt = (n - off < chunk) ? n - off : chunk;
    int outl = 0;
    if (EVP_EncryptUpdate(ossl_->ctx, p + 16 * off, &outl, p + 16 * off, static_cast<int>(16 * cnt)) != 1 ||
        outl != static_cast<int>(16 * cnt))
      throw CryptoError("OpenSSL AES-128-ECB encryption failed");
  }
}

void AES128::encrypt4(block* data) const {
  if (!ossl_) {
    aesni_encrypt_fixed<4>(round_keys_, data);
    return;
  }
  encrypt(data, 4);
}

void AES128::encrypt2(block* data) const {
  if (!ossl_) {
    aesni_encrypt_fixed<2>(round_keys_, data);
    return;
  }
  encrypt(data, 2);
}

}  // namespace capc_gc
