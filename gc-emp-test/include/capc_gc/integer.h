// integer.h — Integer: a two's-complement integer of any bit length, in the shape of emp-tool's Integer.
// Arithmetic wraps modulo 2^length; comparisons are signed.
#pragma once
#include <cstdint>
#include <vector>

#include "capc_gc/bit.h"

namespace capc_gc {

class Integer {
 public:
  std::vector<Bit> bits;  ///< bits[0] is the least significant

  Integer() = default;
  explicit Integer(std::vector<Bit> b) : bits(std::move(b)) {}
  /// emp's constructor: `length` bits of `input`, a constant (PUBLIC) or an input of ALICE or BOB.
  Integer(int length, int64_t input, int party = PUBLIC);

  int size() const { return static_cast<int>(bits.size()); }
  Bit& operator[](int i) { return bits.at(static_cast<size_t>(i)); }
  const Bit& operator[](int i) const { return bits.at(static_cast<size_t>(i)); }

  Integer operator+(const Integer& o) const;
  Integer operator-(const Integer& o) const;
  Integer operator-() const;
  Integer operator^(const Integer& o) const;
  Integer operator&(const Integer& o) const;
  Bit geq(const Integer& o) const;  ///< signed *this >= o
  Bit equal(const Integer& o) const;
  Bit operator>=(const Integer& o) const { return geq(o); }
  Bit operator<(const Integer& o) const { return !geq(o); }
  Bit operator>(const Integer& o) const { return !o.geq(*this); }
  Bit operator<=(const Integer& o) const { return o.geq(*this); }
  Bit operator==(const Integer& o) const { return equal(o); }
  Bit operator!=(const Integer& o) const { return !equal(o); }
  /// sel ? o : *this  (emp's Integer::select), one AND gate per bit.
  Integer select(const Bit& sel, const Integer& o) const;

  /// Reveal to ALICE, BOB or PUBLIC; returns the value where it is learnt, 0 elsewhere. Sign-extended.
  template <typename T = int64_t>
  T reveal(int party = PUBLIC) const {
    return static_cast<T>(reveal_i64(party));
  }

 private:
  int64_t reveal_i64(int party) const;
  void check_same(const Integer& o, const char* op) const;
};

/// Feed many integers of one party in one go (one OT-extension round for BOB's inputs). On the side that
/// does not own them, only values.size() is used.
std::vector<Integer> input_integers(int party, int length, const std::vector<int64_t>& values);

/// Reveal many integers (1..64 bits each) to ALICE, BOB or PUBLIC in one message instead of one per
/// Integer. Returns the sign-extended values where they are learnt, zeros elsewhere.
std::vector<int64_t> reveal_integers(int party, const std::vector<Integer>& values);

}  // namespace capc_gc
