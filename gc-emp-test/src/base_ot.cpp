// base_ot.cpp — Naor–Pinkas random OT over P-256 (see base_ot.h for the protocol and its source).
#include "capc_gc/base_ot.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include <memory>
#include <string>
#include <vector>

#include "capc_gc/errors.h"
#include "capc_gc/hash.h"

namespace capc_gc {

namespace {

// Uncompressed SEC1 encoding of a P-256 point: decoding a compressed point costs a modular square root,
// which made decompression the largest part of the base OTs.
constexpr size_t kPointLen = 65;

struct GroupDel { void operator()(EC_GROUP* g) const { EC_GROUP_free(g); } };
struct PointDel { void operator()(EC_POINT* p) const { EC_POINT_free(p); } };
struct BnDel { void operator()(BIGNUM* b) const { BN_free(b); } };
struct CtxDel { void operator()(BN_CTX* c) const { BN_CTX_free(c); } };
using GroupPtr = std::unique_ptr<EC_GROUP, GroupDel>;
using PointPtr = std::unique_ptr<EC_POINT, PointDel>;
using BnPtr = std::unique_ptr<BIGNUM, BnDel>;
using CtxPtr = std::unique_ptr<BN_CTX, CtxDel>;

void check(int ok, const char* what) {
  if (ok != 1) throw CryptoError(std::string("OpenSSL EC operation failed: ") + what);
}

/// The curve, a scratch context, and helpers that turn OpenSSL failures into exceptions.
struct Curve {
  GroupPtr group{EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)};
  CtxPtr ctx{BN_CTX_new()};
  BnPtr order{BN_new()};
  Curve() {
    if (!group || !ctx || !order) throw CryptoError("cannot set up the P-256 group");
    check(EC_GROUP_get_order(group.get(), order.get(), ctx.get()), "get order");
  }
  PointPtr point() const {
    PointPtr p(EC_POINT_new(group.get()));
    if (!p) throw CryptoError("EC_POINT_new failed");
    return p;
  }
  // A uniform scalar in [1, order): 48 bytes reduced mod the order (bias below 2^-128).
  BnPtr scalar(PRG& prg) const {
    unsigned char raw[48];
    for (;;) {
      prg.random_bytes(raw, sizeof raw);
      BnPtr b(BN_bin2bn(raw, sizeof raw, nullptr));
      if (!b) throw CryptoError("BN_bin2bn failed");
      check(BN_nnmod(b.get(), b.get(), order.get(), ctx.get()), "reduce scalar");
      if (!BN_is_zero(b.get())) return b;
    }
  }
  // out = k·G (base == nullptr) or k·base.
  void mul(EC_POINT* out, const EC_POINT* base, const BIGNUM* k) const {
    if (base == nullptr)
      check(EC_POINT_mul(group.get(), out, k, nullptr, nullptr, ctx.get()), "k*G");
    else
      check(EC_POINT_mul(group.get(), out, nullptr, base, k, ctx.get()), "k*P");
  }
  void encode(const EC_POINT* p, unsigned char* out) const {
    size_t n = EC_POINT_point2oct(group.get(), p, POINT_CONVERSION_UNCOMPRESSED, out, kPointLen, ctx.get());
    if (n != kPointLen) throw CryptoError("cannot encode an EC point");
  }
  PointPtr decode(const unsigned char* in, const char* what) const {
    PointPtr p = point();
    // oct2point rejects encodings that are not on the curve.
    if (EC_POINT_oct2point(group.get(), p.get(), in, kPointLen, ctx.get()) != 1 ||
        EC_POINT_is_at_infinity(group.get(), p.get()))
      throw ProtocolError(std::string("base OT: the peer sent an invalid curve point (") + what + ")");
    return p;
  }
};

block derive_key(block sid, size_t i, int bit, const unsigned char* c_enc, const unsigned char* r_enc,
                 const unsigned char* p0_enc, const unsigned char* shared_enc) {
  Sha256 h;
  h.update("capc-gc NP-ROT", 14);
  unsigned char s[16];
  store_block(s, sid);
  h.update(s, 16).update_u64(i).update_u64(static_cast<uint64_t>(bit));
  h.update(c_enc, kPointLen).update(r_enc, kPointLen).update(p0_enc, kPointLen).update(shared_enc, kPointLen);
  return h.finish_block();
}

}  // namespace

void base_ot_send(IOChannel& io, PRG& prg, block sid, size_t n, block* out) {
  Curve cv;
  BnPtr c = cv.scalar(prg), r = cv.scalar(prg);
  PointPtr C = cv.point(), R = cv.point(), rC = cv.point();
  cv.mul(C.get(), nullptr, c.get());
  cv.mul(R.get(), nullptr, r.get());
  unsigned char c_enc[kPointLen], r_enc[kPointLen];
  cv.encode(C.get(), c_enc);
  cv.encode(R.get(), r_enc);
  io.send_data(c_enc, kPointLen);
  io.send_data(r_enc, kPointLen);
  io.flush();
  cv.mul(rC.get(), C.get(), r.get());  // while the receiver works
  std::vector<unsigned char> p0s(n * kPointLen);
  io.recv_data(p0s.data(), p0s.size());
  PointPtr x0 = cv.point(), x1 = cv.point();
  unsigned char x0_enc[kPointLen], x1_enc[kPointLen];
  for (size_t i = 0; i < n; ++i) {
    const unsigned char* p0_enc = p0s.data() + i * kPointLen;
    PointPtr p0 = cv.decode(p0_enc, "P0");
    cv.mul(x0.get(), p0.get(), r.get());  // r·P0
    check(EC_POINT_copy(x1.get(), x0.get()), "copy");
    check(EC_POINT_invert(cv.group.get(), x1.get(), cv.ctx.get()), "invert");
    check(EC_POINT_add(cv.group.get(), x1.get(), rC.get(), x1.get(), cv.ctx.get()), "add");  // r·C - r·P0
    if (EC_POINT_is_at_infinity(cv.group.get(), x1.get()))
      throw ProtocolError("base OT: the peer sent P0 = C (a receiver that knows both keys)");
    cv.encode(x0.get(), x0_enc);
    cv.encode(x1.get(), x1_enc);
    out[2 * i] = derive_key(sid, i, 0, c_enc, r_enc, p0_enc, x0_enc);
    out[2 * i + 1] = derive_key(sid, i, 1, c_enc, r_enc, p0_enc, x1_enc);
  }
}

void base_ot_recv(IOChannel& io, PRG& prg, block sid, const bool* choices, size_t n, block* out) {
  Curve cv;
  // k_i·G does not depend on the sender's message: compute it before waiting for C and R.
  std::vector<BnPtr> ks;
  std::vector<PointPtr> ps;
  ks.reserve(n);
  ps.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    ks.push_back(cv.scalar(prg));
    ps.push_back(cv.point());
    cv.mul(ps.back().get(), nullptr, ks.back().get());  // P^{s} = k·G
  }
  unsigned char c_enc[kPointLen], r_enc[kPointLen];
  io.recv_data(c_enc, kPointLen);
  io.recv_data(r_enc, kPointLen);
  PointPtr C = cv.decode(c_enc, "C"), R = cv.decode(r_enc, "R");
  std::vector<unsigned char> p0s(n * kPointLen);
  for (size_t i = 0; i < n; ++i) {
    EC_POINT* p = ps[i].get();
    if (choices[i]) {  // P^0 = C - P^1
      check(EC_POINT_invert(cv.group.get(), p, cv.ctx.get()), "invert");
      check(EC_POINT_add(cv.group.get(), p, C.get(), p, cv.ctx.get()), "add");
    }
    cv.encode(p, p0s.data() + i * kPointLen);
  }
  io.send_data(p0s.data(), p0s.size());
  io.flush();
  unsigned char x_enc[kPointLen];
  PointPtr x = cv.point();
  for (size_t i = 0; i < n; ++i) {
    cv.mul(x.get(), R.get(), ks[i].get());  // k·R = r·P^{s}
    cv.encode(x.get(), x_enc);
    out[i] = derive_key(sid, i, choices[i] ? 1 : 0, c_enc, r_enc, p0s.data() + i * kPointLen, x_enc);
  }
}

}  // namespace capc_gc
