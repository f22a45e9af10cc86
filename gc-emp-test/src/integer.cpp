// integer.cpp — Integer circuits: ripple-carry adder, subtractor, signed comparison, equality, mux.
// Each full adder uses one AND gate: carry' = c ^ ((a ^ c) & (b ^ c)) (the majority function with free
// XORs, as in Kolesnikov–Sadeghi–Schneider, "Improved Garbled Circuit Building Blocks", CANS 2009).
#include "capc_gc/integer.h"

#include <string>

namespace capc_gc {

Integer::Integer(int length, int64_t input, int party) {
  if (length <= 0 || length > 64) throw InputError("Integer length must be in 1..64, got " + std::to_string(length));
  const auto u = static_cast<uint64_t>(input);
  bits.resize(static_cast<size_t>(length));
  if (party == PUBLIC) {
    for (int i = 0; i < length; ++i) bits[static_cast<size_t>(i)] = Bit((u >> i) & 1, PUBLIC);
    return;
  }
  bool raw[64];
  for (int i = 0; i < length; ++i) raw[i] = (u >> i) & 1;
  std::vector<block> labels(static_cast<size_t>(length));
  backend().feed(labels.data(), party, raw, static_cast<size_t>(length));
  for (int i = 0; i < length; ++i) bits[static_cast<size_t>(i)] = Bit(labels[static_cast<size_t>(i)]);
}

void Integer::check_same(const Integer& o, const char* op) const {
  if (o.size() != size())
    throw InputError(std::string("Integer ") + op + ": operand lengths differ (" + std::to_string(size()) + " vs " +
                     std::to_string(o.size()) + ")");
}

namespace {
// sum = a + b + cin (mod 2^n); returns the carry out.
Bit add_into(const std::vector<Bit>& a, const std::vector<Bit>& b, Bit carry, std::vector<Bit>& out) {
  const size_t n = a.size();
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Bit axc = a[i] ^ carry;
    Bit bxc = b[i] ^ carry;
    out[i] = axc ^ b[i];
    if (i + 1 < n) carry = carry ^ (axc & bxc);  // the last carry is not needed for wrap-around sums
  }
  return carry;
}
}  // namespace

Integer Integer::operator+(const Integer& o) const {
  check_same(o, "+");
  Integer r;
  add_into(bits, o.bits, Bit(false, PUBLIC), r.bits);
  return r;
}

Integer Integer::operator-(const Integer& o) const {
  check_same(o, "-");
  // a - b = a + ~b + 1
  std::vector<Bit> nb(o.bits.size());
  for (size_t i = 0; i < nb.size(); ++i) nb[i] = !o.bits[i];
  Integer r;
  add_into(bits, nb, Bit(true, PUBLIC), r.bits);
  return r;
}

Integer Integer::operator-() const { return Integer(size(), 0, PUBLIC) - *this; }

Integer Integer::operator^(const Integer& o) const {
  check_same(o, "^");
  Integer r(*this);
  for (size_t i = 0; i < bits.size(); ++i) r.bits[i] = bits[i] ^ o.bits[i];
  return r;
}

Integer Integer::operator&(const Integer& o) const {
  check_same(o, "&");
  Integer r(*this);
  for (size_t i = 0; i < bits.size(); ++i) r.bits[i] = bits[i] & o.bits[i];
  return r;
}

Bit Integer::geq(const Integer& o) const {
  check_same(o, ">=");
  // Signed a >= b  <=>  unsigned (a ^ msb) >= (b ^ msb)  <=>  carry out of a' + ~b' + 1 is 1.
  const size_t n = bits.size();
  Bit carry(true, PUBLIC);
  for (size_t i = 0; i < n; ++i) {
    Bit a = bits[i], nb = !o.bits[i];
    if (i + 1 == n) {
      a = !a;
      nb = !nb;
    }
    carry = carry ^ ((a ^ carry) & (nb ^ carry));
  }
  return carry;
}

Bit Integer::equal(const Integer& o) const {
  check_same(o, "==");
  Bit acc = !(bits[0] ^ o.bits[0]);
  for (size_t i = 1; i < bits.size(); ++i) acc = acc & !(bits[i] ^ o.bits[i]);
  return acc;
}

Integer Integer::select(const Bit& sel, const Integer& o) const {
  check_same(o, "select");
  Integer r(*this);
  for (size_t i = 0; i < bits.size(); ++i) r.bits[i] = bits[i].select(sel, o.bits[i]);
  return r;
}

int64_t Integer::reveal_i64(int party) const { return reveal_integers(party, {*this})[0]; }

std::vector<int64_t> reveal_integers(int party, const std::vector<Integer>& values) {
  size_t total = 0;
  for (const Integer& x : values) {
    if (x.bits.empty() || x.bits.size() > 64)
      throw InputError("Integer::reveal supports 1..64 bits, this Integer has " + std::to_string(x.bits.size()));
    total += x.bits.size();
  }
  std::vector<block> labels;
  labels.reserve(total);
  for (const Integer& x : values)
    for (const Bit& b : x.bits) labels.push_back(b.label);
  std::vector<uint8_t> out(total, 0);  // uint8_t, not vector<bool>, so it can be passed as bool*
  backend().reveal(reinterpret_cast<bool*>(out.data()), party, labels.data(), total);
  std::vector<int64_t> result(values.size(), 0);
  const bool learnt = party == PUBLIC || party == backend().party();
  if (!learnt) return result;
  size_t off = 0;
  for (size_t k = 0; k < values.size(); ++k) {
    const size_t n = values[k].bits.size();
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(out[off + i]) << i;
    if (n < 64 && out[off + n - 1]) v |= ~uint64_t{0} << n;  // sign-extend
    result[k] = static_cast<int64_t>(v);
    off += n;
  }
  return result;
}

std::vector<Integer> input_integers(int party, int length, const std::vector<int64_t>& values) {
  if (length <= 0 || length > 64) throw InputError("Integer length must be in 1..64");
  const size_t n = values.size(), L = static_cast<size_t>(length);
  std::vector<uint8_t> raw(n * L, 0);  // uint8_t, not vector<bool>, so it can be passed as bool*
  if (party == backend().party())
    for (size_t k = 0; k < n; ++k)
      for (size_t i = 0; i < L; ++i) raw[k * L + i] = (static_cast<uint64_t>(values[k]) >> i) & 1;
  std::vector<block> labels(n * L);
  backend().feed(labels.data(), party, reinterpret_cast<const bool*>(raw.data()), n * L);
  std::vector<Integer> out(n);
  for (size_t k = 0; k < n; ++k) {
    out[k].bits.resize(L);
    for (size_t i = 0; i < L; ++i) out[k].bits[i] = Bit(labels[k * L + i]);
  }
  return out;
}

}  // namespace capc_gc
