// bit.h — Bit: one wire of a garbled circuit, in the shape of emp-tool's Bit.
#pragma once
#include <type_traits>

#include "capc_gc/backend.h"
#include "capc_gc/errors.h"

namespace capc_gc {

inline Backend& backend() {
  Backend* b = current_backend();
  if (b == nullptr) throw GcError("no 2PC backend on this thread: call setup_semi_honest() first");
  return *b;
}

/// A secret bit. Bit(v, PUBLIC) is a constant; Bit(v, ALICE/BOB) is an input of that party.
class Bit {
 public:
  block label;

  Bit() : label(zero_block()) {}
  explicit Bit(block l) : label(l) {}
  explicit Bit(bool v, int party = PUBLIC) {
    if (party == PUBLIC) {
      label = backend().public_label(v);
    } else {
      backend().feed(&label, party, &v, 1);
    }
  }

  Bit operator^(const Bit& o) const { return Bit(backend().xor_gate(label, o.label)); }
  Bit operator&(const Bit& o) const { return Bit(backend().and_gate(label, o.label)); }
  Bit operator|(const Bit& o) const { return (*this ^ o) ^ (*this & o); }
  Bit operator!() const { return Bit(backend().not_gate(label)); }
  Bit operator==(const Bit& o) const { return !(*this ^ o); }
  Bit operator!=(const Bit& o) const { return *this ^ o; }
  Bit& operator^=(const Bit& o) { return *this = *this ^ o; }
  Bit& operator&=(const Bit& o) { return *this = *this & o; }
  /// sel ? o : *this  (emp's Bit::select), one AND gate.
  Bit select(const Bit& sel, const Bit& o) const { return *this ^ (sel & (*this ^ o)); }

  template <typename T = bool>
  T reveal(int party = PUBLIC) const {
    static_assert(std::is_same<T, bool>::value, "Bit::reveal supports bool");
    bool out = false;
    backend().reveal(&out, party, &label, 1);
    return out;
  }
};

}  // namespace capc_gc
