// test_aes_hash — AES-128 known answers (FIPS-197 Appendix B and C.1), the TCCR hash and the PRG against
// values computed independently (Python `cryptography`), SHA-256 (FIPS 180-2 "abc").
// Run with CAPC_GC_NO_AESNI=1 and CAPC_GC_NO_VAES=1 as well (ctest does), so every AES path is checked.
#include <cstring>
#include <vector>

#include "capc_gc/aes.h"
#include "capc_gc/hash.h"
#include "capc_gc/prg.h"
#include "test_util.h"

using namespace capc_gc;

static block hex_block(const char* hex) {
  unsigned char b[16];
  for (int i = 0; i < 16; ++i) {
    unsigned v;
    std::sscanf(hex + 2 * i, "%2x", &v);
    b[i] = static_cast<unsigned char>(v);
  }
  return load_block(b);
}

int main() {
  std::printf("AES path: %s\n", aes_path());
  {  // FIPS-197 Appendix C.1
    AES128 aes(hex_block("000102030405060708090a0b0c0d0e0f"));
    block x = hex_block("00112233445566778899aabbccddeeff");
    aes.encrypt(&x, 1);
    CHECK(block_eq(x, hex_block("69c4e0d86a7b0430d8cdb78070b4c55a")));
  }
  {  // FIPS-197 Appendix B
    AES128 aes(hex_block("2b7e151628aed2a6abf7158809cf4f3c"));
    block x = hex_block("3243f6a8885a308d313198a2e0370734");
    aes.encrypt(&x, 1);
    CHECK(block_eq(x, hex_block("3925841d02dc09fbdc118597196a0b32")));
  }
  {  // batch paths (8-wide, 4-wide, 2-wide, tail) agree with single-block encryption
    AES128 aes(hex_block("000102030405060708090a0b0c0d0e0f"));
    block many[19], one[19];
    for (int i = 0; i < 19; ++i) many[i] = one[i] = make_block(i * 7 + 1, i * 13 + 5);
    aes.encrypt(many, 19);
    for (int i = 0; i < 19; ++i) aes.encrypt(&one[i], 1);
    for (int i = 0; i < 19; ++i) CHECK(block_eq(many[i], one[i]));
    block four[4] = {one[0], one[1], one[2], one[3]}, ref[4] = {one[0], one[1], one[2], one[3]};
    aes.encrypt4(four);
    aes.encrypt(ref, 4);
    for (int i = 0; i < 4; ++i) CHECK(block_eq(four[i], ref[i]));
  }
  {  // TCCR: H(x, i) = pi(pi(x) ^ i) ^ pi(x), pi = AES under the FIPS C.1 key
    TccrHash h(hex_block("000102030405060708090a0b0c0d0e0f"));
    block x = hex_block("00112233445566778899aabbccddeeff");
    block tw = make_block(0x4741544500000000ULL, 5);
    CHECK(block_eq(h.hash(x, tw), hex_block("f2e720a066dc2abdf1f50254c634c8f6")));
    block xs[4] = {x, x, make_block(1, 2), make_block(3, 4)};
    block tws[4] = {tw, make_block(0, 6), tw, tw};
    block out4[4], outn[4];
    h.hash4(xs, tws, out4);
    h.hash_n(xs, tws, outn, 4);
    for (int i = 0; i < 4; ++i) {
      CHECK(block_eq(out4[i], h.hash(xs[i], tws[i])));
      CHECK(block_eq(outn[i], out4[i]));
    }
    CHECK(!block_eq(out4[0], out4[1]));  // the tweak matters
    block out2[2];
    h.hash2(xs, tws, out2);
    CHECK(block_eq(out2[0], out4[0]) && block_eq(out2[1], out4[1]));
  }
  {  // long batches (the wide VAES loops of 32 and 4 blocks, then the tails) agree with one block at a time,
     // for both the cipher and the fused TCCR hash
    AES128 aes(hex_block("2b7e151628aed2a6abf7158809cf4f3c"));
    TccrHash h(hex_block("2b7e151628aed2a6abf7158809cf4f3c"));
    for (size_t n : {1, 2, 3, 5, 31, 32, 33, 70, 131}) {
      std::vector<block> x(n), tw(n), many(n), out(n);
      for (size_t i = 0; i < n; ++i) {
        x[i] = many[i] = make_block(i * 0x9e3779b97f4a7c15ULL, ~i);
        tw[i] = make_block(0x4741544500000000ULL, 3 * i);
      }
      aes.encrypt(many.data(), n);
      h.hash_n(x.data(), tw.data(), out.data(), n);
      int bad = 0;
      for (size_t i = 0; i < n; ++i) {
        block one = x[i];
        aes.encrypt(&one, 1);
        bad += !block_eq(one, many[i]);
        bad += !block_eq(out[i], h.hash(x[i], tw[i]));
      }
      CHECK_EQ(bad, 0);
    }
  }
  {  // PRG: block i = AES_seed(i), also across calls and in long runs
    PRG a(hex_block("000102030405060708090a0b0c0d0e0f")), c(hex_block("000102030405060708090a0b0c0d0e0f"));
    std::vector<block> one(50), split(50);
    a.random_blocks(one.data(), 50);
    c.random_blocks(split.data(), 17);
    c.random_blocks(split.data() + 17, 33);
    int bad = 0;
    for (size_t i = 0; i < 50; ++i) bad += !block_eq(one[i], split[i]);
    CHECK_EQ(bad, 0);
  }
  {  // PRG: block i = AES_seed(i)
    PRG prg(hex_block("000102030405060708090a0b0c0d0e0f"));
    block b[2];
    prg.random_blocks(b, 2);
    CHECK(block_eq(b[0], hex_block("c6a13b37878f5b826f4f8162a1c8d879")));
    CHECK(block_eq(b[1], hex_block("e37cd363dd7c87a09aff0e3e60e09c82")));
    PRG r1, r2;  // OS-seeded generators differ
    CHECK(!block_eq(r1.random_block(), r2.random_block()));
  }
  {  // SHA-256("abc")
    Sha256 s;
    s.update("abc", 3);
    Sha256Digest d = s.finish();
    const unsigned char want[4] = {0xba, 0x78, 0x16, 0xbf};
    CHECK(std::memcmp(d.data(), want, 4) == 0);
  }
  return test::finish("test_aes_hash");
}
