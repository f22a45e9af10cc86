// setup.h — emp-sh2pc's setup_semi_honest / finalize_semi_honest for one circuit on this thread.
#pragma once
#include "capc_gc/io_channel.h"
#include "capc_gc/semi_honest.h"

namespace capc_gc {

/// Create the party for `party` over io, install it as this thread's backend and run the session's setup
/// (base OTs, Delta, constants).
/// session_id should come from handshake(); both parties must pass the same value.
SemiHonestParty* setup_semi_honest(IOChannel* io, int party, block session_id = zero_block());
/// Flush pending output and destroy the party created by setup_semi_honest on this thread.
void finalize_semi_honest();

}  // namespace capc_gc
