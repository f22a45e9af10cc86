// backend.h — the execution backend that Bit/Integer operations call: one per thread, set for a query.
#pragma once
#include <cstddef>
#include <cstdint>

#include "capc_gc/block.h"

namespace capc_gc {

/// Party numbers as in emp-tool: ALICE garbles (AP, PG), BOB evaluates (QP).
enum Party : int { PUBLIC = 0, ALICE = 1, BOB = 2 };

/// What the circuit-building API needs from a 2PC engine. Labels are opaque blocks.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual int party() const = 0;
  virtual block and_gate(block a, block b) = 0;
  block xor_gate(block a, block b) { return xor_block(a, b); }
  virtual block not_gate(block a) = 0;
  virtual block public_label(bool v) = 0;
  /// Input n bits owned by `owner` (ALICE or BOB); bits is read only on the owner's side.
  virtual void feed(block* labels, int owner, const bool* bits, size_t n) = 0;
  /// Reveal n wires to `to` (ALICE, BOB or PUBLIC); out is written where the value is learnt.
  virtual void reveal(bool* out, int to, const block* labels, size_t n) = 0;
  uint64_t and_gates() const { return and_gates_; }

 protected:
  uint64_t and_gates_ = 0;
};

/// The backend of the current thread (null outside a query).
Backend* current_backend();
/// Set by ScopedBackend; exposed for emp-style setup_semi_honest().
void set_current_backend(Backend* b);

/// Installs a backend for the current thread for the lifetime of this object.
class ScopedBackend {
 public:
  explicit ScopedBackend(Backend* b) : prev_(current_backend()) { set_current_backend(b); }
  ~ScopedBackend() { set_current_backend(prev_); }
  ScopedBackend(const ScopedBackend&) = delete;
  ScopedBackend& operator=(const ScopedBackend&) = delete;

 private:
  Backend* prev_;
};

}  // namespace capc_gc
