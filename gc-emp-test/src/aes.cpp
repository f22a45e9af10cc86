// aes.cpp — AES-128 (FIPS-197) with an AES-NI path selected at run time and an OpenSSL fallback.
#include "capc_gc/aes.h"

#include <immintrin.h>
#include <openssl/evp.h>
#include <wmmintrin.h>

#include <cstdlib>
#include <utility>

#include "capc_gc/errors.h"

namespace capc_gc {

namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

bool detect_aesni() {
  if (env_flag("CAPC_GC_NO_AESNI")) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2");
}

// Wide AES: VAES encrypts 4 blocks per instruction on 512-bit registers (AVX-512F) or 2 on 256-bit ones
// (AVX2). Same cipher, so the results are identical; CAPC_GC_NO_VAES=1 keeps the 128-bit AES-NI path.
enum class Wide { kNone, k256, k512 };

Wide detect_wide(bool aesni) {
  if (!aesni || env_flag("CAPC_GC_NO_VAES")) return Wide::kNone;
  if (!__builtin_cpu_supports("vaes")) return Wide::kNone;
  if (__builtin_cpu_supports("avx512f")) return Wide::k512;
  if (__builtin_cpu_supports("avx2")) return Wide::k256;
  return Wide::kNone;
}

const bool kUseAesni = detect_aesni();
const Wide kWide = detect_wide(kUseAesni);

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

// N registers of 4 blocks each, rounds interleaved (8 registers = 32 blocks keep the VAES units busy).
template <int N>
__attribute__((target("vaes,avx512f"))) inline void vaes512_fixed(const __m512i* k, block* d) {
  __m512i x[N];
  for (int j = 0; j < N; ++j) x[j] = _mm512_xor_si512(_mm512_loadu_si512(d + 4 * j), k[0]);
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) x[j] = _mm512_aesenc_epi128(x[j], k[r]);
  for (int j = 0; j < N; ++j) _mm512_storeu_si512(d + 4 * j, _mm512_aesenclast_epi128(x[j], k[10]));
}

__attribute__((target("vaes,avx512f,aes"))) void vaes512_encrypt(const block* rk, block* d, size_t n) {
  __m512i k[11];
  for (int r = 0; r < 11; ++r) k[r] = _mm512_broadcast_i32x4(rk[r]);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) vaes512_fixed<8>(k, d + i);
  for (; i + 4 <= n; i += 4) vaes512_fixed<1>(k, d + i);
  for (; i < n; ++i) aesni_encrypt_fixed<1>(rk, d + i);
}

template <int N>
__attribute__((target("vaes,avx2"))) inline void vaes256_fixed(const __m256i* k, block* d) {
  __m256i x[N];
  for (int j = 0; j < N; ++j)
    x[j] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + 2 * j)), k[0]);
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) x[j] = _mm256_aesenc_epi128(x[j], k[r]);
  for (int j = 0; j < N; ++j)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 2 * j), _mm256_aesenclast_epi128(x[j], k[10]));
}

__attribute__((target("vaes,avx2,aes"))) void vaes256_encrypt(const block* rk, block* d, size_t n) {
  __m256i k[11];
  for (int r = 0; r < 11; ++r) k[r] = _mm256_broadcastsi128_si256(rk[r]);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) vaes256_fixed<8>(k, d + i);
  for (; i + 2 <= n; i += 2) vaes256_fixed<1>(k, d + i);
  for (; i < n; ++i) aesni_encrypt_fixed<1>(rk, d + i);
}

// The TCCR hash H(x, i) = pi(pi(x) ^ i) ^ pi(x) with pi(x) kept in registers between the two passes.
template <int N>
__attribute__((target("aes,sse2"))) inline void aesni_tccr_fixed(const block* rk, const block* x, const block* tw,
                                                                 block* out) {
  block u[N], v[N];
  for (int j = 0; j < N; ++j) u[j] = x[j];
  aesni_encrypt_fixed<N>(rk, u);
  for (int j = 0; j < N; ++j) v[j] = _mm_xor_si128(u[j], tw[j]);
  aesni_encrypt_fixed<N>(rk, v);
  for (int j = 0; j < N; ++j) out[j] = _mm_xor_si128(v[j], u[j]);
}

__attribute__((target("aes,sse2"))) void aesni_tccr(const block* rk, const block* x, const block* tw, block* out,
                                                    size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) aesni_tccr_fixed<8>(rk, x + i, tw + i, out + i);
  for (; i < n; ++i) aesni_tccr_fixed<1>(rk, x + i, tw + i, out + i);
}

template <int N>
__attribute__((target("vaes,avx512f"))) inline void vaes512_tccr_fixed(const __m512i* k, const block* x,
                                                                       const block* tw, block* out) {
  __m512i u[N], v[N];
  for (int j = 0; j < N; ++j) u[j] = _mm512_xor_si512(_mm512_loadu_si512(x + 4 * j), k[0]);
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) u[j] = _mm512_aesenc_epi128(u[j], k[r]);
  for (int j = 0; j < N; ++j) {
    u[j] = _mm512_aesenclast_epi128(u[j], k[10]);
    v[j] = _mm512_xor_si512(_mm512_xor_si512(u[j], _mm512_loadu_si512(tw + 4 * j)), k[0]);
  }
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) v[j] = _mm512_aesenc_epi128(v[j], k[r]);
  for (int j = 0; j < N; ++j)
    _mm512_storeu_si512(out + 4 * j, _mm512_xor_si512(_mm512_aesenclast_epi128(v[j], k[10]), u[j]));
}

__attribute__((target("vaes,avx512f,aes"))) void vaes512_tccr(const block* rk, const block* x, const block* tw,
                                                              block* out, size_t n) {
  __m512i k[11];
  for (int r = 0; r < 11; ++r) k[r] = _mm512_broadcast_i32x4(rk[r]);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) vaes512_tccr_fixed<8>(k, x + i, tw + i, out + i);
  for (; i + 4 <= n; i += 4) vaes512_tccr_fixed<1>(k, x + i, tw + i, out + i);
  for (; i < n; ++i) aesni_tccr_fixed<1>(rk, x + i, tw + i, out + i);
}

template <int N>
__attribute__((target("vaes,avx2"))) inline void vaes256_tccr_fixed(const __m256i* k, const block* x,
                                                                    const block* tw, block* out) {
  __m256i u[N], v[N];
  for (int j = 0; j < N; ++j)
    u[j] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2 * j)), k[0]);
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) u[j] = _mm256_aesenc_epi128(u[j], k[r]);
  for (int j = 0; j < N; ++j) {
    u[j] = _mm256_aesenclast_epi128(u[j], k[10]);
    v[j] = _mm256_xor_si256(
        _mm256_xor_si256(u[j], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tw + 2 * j))), k[0]);
  }
  for (int r = 1; r < 10; ++r)
    for (int j = 0; j < N; ++j) v[j] = _mm256_aesenc_epi128(v[j], k[r]);
  for (int j = 0; j < N; ++j)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * j),
                        _mm256_xor_si256(_mm256_aesenclast_epi128(v[j], k[10]), u[j]));
}

__attribute__((target("vaes,avx2,aes"))) void vaes256_tccr(const block* rk, const block* x, const block* tw,
                                                           block* out, size_t n) {
  __m256i k[11];
  for (int r = 0; r < 11; ++r) k[r] = _mm256_broadcastsi128_si256(rk[r]);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) vaes256_tccr_fixed<8>(k, x + i, tw + i, out + i);
  for (; i + 2 <= n; i += 2) vaes256_tccr_fixed<1>(k, x + i, tw + i, out + i);
  for (; i < n; ++i) aesni_tccr_fixed<1>(rk, x + i, tw + i, out + i);
}

}  // namespace

bool aesni_enabled() { return kUseAesni; }

const char* aes_path() {
  if (!kUseAesni) return "OpenSSL";
  switch (kWide) {
    case Wide::k512: return "VAES-512";
    case Wide::k256: return "VAES-256";
    default: return "AES-NI";
  }
}

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
    if (kWide == Wide::k512 && n >= 4)
      vaes512_encrypt(round_keys_, data, n);
    else if (kWide == Wide::k256 && n >= 2)
      vaes256_encrypt(round_keys_, data, n);
    else
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

bool AES128::tccr(const block* x, const block* tw, block* out, size_t n) const {
  if (ossl_) return false;
  if (kWide == Wide::k512)
    vaes512_tccr(round_keys_, x, tw, out, n);
  else if (kWide == Wide::k256)
    vaes256_tccr(round_keys_, x, tw, out, n);
  else
    aesni_tccr(round_keys_, x, tw, out, n);
  return true;
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
