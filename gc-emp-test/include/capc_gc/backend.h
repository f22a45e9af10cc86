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
  /// n independent AND gates out[i] = a[i] & b[i] (out may alias a or b): the batched form the layer
  /// circuits use, so that the hash of several gates is pipelined and tables move in bulk.
  virtual void and_n(const block* a, const block* b, block* out, size_t n) = 0;
  block xor_gate(block a, block b) { return xor_block(a, b); }
  /// NOT(x) = x ^ not_mask(): Delta on the garbler's side, zero on the evaluator's.
  virtual block not_mask() const = 0;
  block not_gate(block a) { return xor_block(a, not_mask()); }
  virtual block public_label(bool v) = 0;
  /// Input n bits owned by `owner` (ALICE or BOB); bits is read only on the owner's side.
  virtual void feed(block* labels, int owner, const bool* bits, size_t n) = 0;
  /// Reveal n wires to `to` (ALICE, BOB or PUBLIC); out is written where the value is learnt.
  virtual void reveal(bool* out, int to, const block* labels, size_t n) = 0;
  /// Reveal to BOB only, for each of `groups` groups of g wires (labels[j*g + k]),
  ///     y_j = (sum_k weights[k] * bit_{j,k} - m_j) mod 2^out_bits, sign-extended to 64 bits,
  /// without computing the sum in the circuit (see SemiHonestParty). ALICE passes m (groups values) and
  /// no y; BOB passes y and no m. Some weight must be odd (its term carries all of m's bits).
  virtual void reveal_weighted(const block* labels, size_t groups, const uint64_t* weights, size_t g, int out_bits,
                               const int64_t* m, int64_t* y) = 0;
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
