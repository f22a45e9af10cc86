// semi_honest.h — semi-honest Yao: half-gates garbling with free-XOR and point-and-permute, inputs by
// OT extension; one object per party holds the session state (base OTs, PRG, counters) across queries.
//
// Garbling follows S. Zahur, M. Rosulek, D. Evans, "Two Halves Make a Whole: Reducing Data Transfer in
// Garbled Circuits using Half Gates", EUROCRYPT 2015 (Figure 2): two ciphertexts per AND gate, XOR and NOT
// free (Kolesnikov–Schneider 2008), colour bit = lsb of a label with lsb(Delta) = 1. The hash is the TCCR
// hash of hash.h with tweaks 2g and 2g+1 for AND gate g (a session-wide counter, never reused).
// The garbler streams garbled tables as it goes, buffered by the channel; the evaluator consumes them in
// the same order, so memory stays constant in the circuit size.
#pragma once
#include <memory>

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
  /// Start a new query (circuit): the garbler draws a fresh Delta and constant-wire labels.
  virtual void begin_query() = 0;
  void feed(block* labels, int owner, const bool* bits, size_t n) override;
  void reveal(bool* out, int to, const block* labels, size_t n) override;
  /// Labels of the constant wires (set by the garbler's begin_query, received by the evaluator).
  block public_label(bool v) override { return public_[v ? 1 : 0]; }

 protected:
  virtual void feed_own(block* labels, const bool* bits, size_t n) = 0;    // inputs of this party
  virtual void feed_peer(block* labels, size_t n) = 0;                     // inputs of the other party
  /// This party's share of the colour decomposition: garbler lsb(zero-label), evaluator lsb(label).
  static bool colour(block b) { return lsb(b); }

  IOChannel& io_;
  block sid_;
  PRG prg_;
  TccrHash hash_;
  uint64_t gate_index_ = 0;
  block public_[2] = {zero_block(), zero_block()};
};

/// ALICE: garbles.
class Garbler final : public SemiHonestParty {
 public:
  Garbler(IOChannel& io, block session_id) : SemiHonestParty(io, session_id) {}
  int party() const override { return ALICE; }
  void begin_query() override;
  block and_gate(block a, block b) override;
  block not_gate(block a) override { return xor_block(a, delta_); }

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
  void begin_query() override;
  block and_gate(block a, block b) override;
  block not_gate(block a) override { return a; }

 protected:
  void feed_own(block* labels, const bool* bits, size_t n) override;
  void feed_peer(block* labels, size_t n) override;

 private:
  IknpCotReceiver ot_;
};

/// Create the party object for ALICE (1) or BOB (2).
std::unique_ptr<SemiHonestParty> make_party(int party, IOChannel& io, block session_id);

}  // namespace capc_gc
