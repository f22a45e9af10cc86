// semi_honest.h — semi-honest Yao: half-gates garbling with free-XOR and point-and-permute, inputs by
// OT extension and by a shared seed; one object per party holds the session state across queries.
//
// Garbling follows S. Zahur, M. Rosulek, D. Evans, "Two Halves Make a Whole: Reducing Data Transfer in
// Garbled Circuits using Half Gates", EUROCRYPT 2015 (Figure 2): two ciphertexts per AND gate, XOR and NOT
// free (Kolesnikov–Schneider 2008), colour bit = lsb of a label with lsb(Delta) = 1. The hash is the TCCR
// hash of hash.h with tweaks 2g and 2g+1 for AND gate g.
//
// Session state (set up once, right after the handshake; the same for every query):
// * Delta, the garbler's free-XOR offset, drawn once per session and used as the IKNP sender's secret, so
//   the evaluator's input labels come out of the OT extension already correlated (iknp.h);
// * the garbler's input labels: both parties expand one PRG seeded from the session id; the evaluator's
//   label of a garbler input wire is the next PRG block L, the garbler's zero-label is L ^ bit·Delta (the
//   evaluator's view, L uniform and Delta secret, is the same as when the garbler sends its labels), so the
//   garbler's inputs cost no bytes;
// * constant wires: two labels from the same PRG;
// * the tweak counter: every hash of the session (AND gates and output tables, all queries) has its own
//   tweak, so one Delta for the whole session never meets a repeated tweak.
// The garbler streams garbled tables as it goes, buffered by the channel; the evaluator consumes them in the
// same order, so memory stays constant in the circuit size.
//
// Outputs: reveal() decodes wires from colour bits (the learning side receives the other's, packed eight to
// a byte). reveal_weighted() gives BOB y = sum_k w_k·bit_k - m (mod 2^O) for a mask m of the garbler without
// computing the sum in the circuit: for each wire k the garbler sends two short ciphertexts, the arithmetic
// value b·w_k - m_k under H(label_b) in the slot given by the label's colour, and BOB decrypts the one his
// label opens. The m_k are uniform and sum to m, so BOB learns y and nothing else; the other slot is hidden
// by H(label ^ Delta) as in a garbled table. Costs 2·ceil((O - tz(w_k))/8) bytes per wire instead of O-1 AND
// gates (and O garbler input bits) for an in-circuit subtraction.
#pragma once
#include <memory>
#include <vector>

#include "capc_gc/backend.h"
#include "capc_gc/hash.h"
#include "capc_gc/iknp.h"
#include "capc_gc/io_channel.h"
#include "capc_gc/prg.h"

namespace capc_gc {

/// State shared by both roles.
class SemiHonestParty : public Backend {
 public:
  SemiHonestParty(IOChannel& io, block session_id);
  IOChannel& io() { return io_; }
  /// Once per session, before the first circuit and at the same point on both sides: the 128 base OTs
  /// (Naor–Pinkas), Delta, the constant labels. Does nothing the second time.
  virtual void setup() = 0;
  bool ready() const { return ready_; }
  void feed(block* labels, int owner, const bool* bits, size_t n) override;
  void reveal(bool* out, int to, const block* labels, size_t n) override;
  block public_label(bool v) override { return public_[v ? 1 : 0]; }
  /// Tweaks drawn so far (AND gates take two, output-table wires one): a session-wide counter.
  uint64_t tweaks_used() const { return tweak_; }

 protected:
  virtual void feed_own(block* labels, const bool* bits, size_t n) = 0;  // inputs of this party
  virtual void feed_peer(block* labels, size_t n) = 0;                   // inputs of the other party
  void require_ready(const char* what) const;
  void check_weighted(size_t groups, size_t g, int out_bits) const;

  IOChannel& io_;
  block sid_;
  PRG prg_;     // this party's private randomness (OS entropy)
  PRG shared_;  // the garbler's input labels and the constants, expanded by both parties
  TccrHash hash_;
  uint64_t tweak_ = 0;
  block public_[2] = {zero_block(), zero_block()};
  bool ready_ = false;
  std::vector<block> hin_, htw_, hout_;  // hash scratch for the batched paths
};

/// ALICE: garbles.
class Garbler final : public SemiHonestParty {
 public:
  Garbler(IOChannel& io, block session_id) : SemiHonestParty(io, session_id) {}
  int party() const override { return ALICE; }
  void setup() override;
  block and_gate(block a, block b) override;
  void and_n(const block* a, const block* b, block* out, size_t n) override;
  block not_mask() const override { return delta_; }
  void reveal_weighted(const block* labels, size_t groups, const uint64_t* weights, size_t g, int out_bits,
                       const int64_t* m, int64_t* y) override;
  /// The session's free-XOR offset (lsb 1). Never sent; exposed for tests of the label algebra.
  block delta() const { return delta_; }

 protected:
  void feed_own(block* labels, const bool* bits, size_t n) override;
  void feed_peer(block* labels, size_t n) override;

 private:
  block delta_ = zero_block();
  IknpCotSender ot_;
};

/// BOB: evaluates.
class Evaluator final : public SemiHonestParty {
 public:
  Evaluator(IOChannel& io, block session_id) : SemiHonestParty(io, session_id) {}
  int party() const override { return BOB; }
  void setup() override;
  block and_gate(block a, block b) override;
  void and_n(const block* a, const block* b, block* out, size_t n) override;
  block not_mask() const override { return zero_block(); }
  void reveal_weighted(const block* labels, size_t groups, const uint64_t* weights, size_t g, int out_bits,
                       const int64_t* m, int64_t* y) override;

 protected:
  void feed_own(block* labels, const bool* bits, size_t n) override;
  void feed_peer(block* labels, size_t n) override;

 private:
  IknpCotReceiver ot_;
};

/// Create the party object for ALICE (1) or BOB (2); call setup() on it before the first circuit.
std::unique_ptr<SemiHonestParty> make_party(int party, IOChannel& io, block session_id);

}  // namespace capc_gc
