// setup.cpp — thread-local ownership of the party object created by setup_semi_honest.
#include "capc_gc/setup.h"

#include <memory>

namespace capc_gc {

namespace {
thread_local std::unique_ptr<SemiHonestParty> tls_party;
}

SemiHonestParty* setup_semi_honest(IOChannel* io, int party, block session_id) {
  tls_party = make_party(party, *io, session_id);
  set_current_backend(tls_party.get());
  tls_party->setup();
  return tls_party.get();
}

void finalize_semi_honest() {
  if (tls_party) tls_party->io().flush();
  set_current_backend(nullptr);
  tls_party.reset();
}

}  // namespace capc_gc
