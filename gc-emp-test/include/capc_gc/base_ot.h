// base_ot.h — base oblivious transfers: Naor–Pinkas random OT over the NIST P-256 curve (OpenSSL EC API).
//
// Follows M. Naor and B. Pinkas, "Efficient Oblivious Transfer Protocols", SODA 2001, Section 3.1 (the
// random-oracle protocol, with the sender's randomness r reused across transfers as that section allows),
// in its random-OT form:
//   sender   -> receiver : C = c·G (a point whose discrete log the receiver does not know), R = r·G
//   receiver -> sender   : P_i^0 where P_i^{s_i} = k_i·G and P_i^{1-s_i} = C - P_i^{s_i}
//   sender   : m_i^0 = H(i, 0, r·P_i^0),  m_i^1 = H(i, 1, r·C - r·P_i^0)    (= r·P_i^1)
//   receiver : m_i^{s_i} = H(i, s_i, k_i·R)
// The receiver cannot know the discrete logs of both P_i^0 and P_i^1 (their sum is C), so under CDH in the
// random-oracle model m_i^{1-s_i} is hidden; P_i^0 is uniform whatever s_i is, so s_i is hidden.
// Why not "Simplest OT" (Chou–Orlandi 2015): its UC proof has known gaps and its keys must hash the full
// transcript to be safe; Naor–Pinkas is an established, simple semi-honest choice. H is SHA-256 over the
// session id, the index, the bit, the transcript (C, R, P_i^0) and the shared point, truncated to 128 bits.
#pragma once
#include <cstddef>

#include "capc_gc/block.h"
#include "capc_gc/io_channel.h"
#include "capc_gc/prg.h"

namespace capc_gc {

/// Sender side: out[2*i + b] = m_i^b for i < n.
void base_ot_send(IOChannel& io, PRG& prg, block session_id, size_t n, block* out);
/// Receiver side: out[i] = m_i^{choices[i]}.
void base_ot_recv(IOChannel& io, PRG& prg, block session_id, const bool* choices, size_t n, block* out);

}  // namespace capc_gc
