"""``capc party`` with one fault injected, for the crash tests (test code only: production code has
no crash hooks). Usage: ``python faulty_party.py FAULT=ID party --role ... --run ...`` where FAULT is

* ``ap_exit_at_query``: the AP exits abruptly when a request holding query ``ID`` arrives (step 1a);
* ``ap_exit_at_argmax``: the AP exits when its argmax circuits reach query ``ID`` (step 1b);
* ``pg_exit_after_query``: the PG exits right after settling a request holding query ``ID``.
"""

from __future__ import annotations

import os
import sys

from capc.parties.answering_party import AnsweringParty
from capc.parties.privacy_guardian import PrivacyGuardian


def _exit(party: object, what: str) -> None:
    party.ctx.log.warning("fault injection: exiting %s", what)  # type: ignore[attr-defined]
    os._exit(3)


def inject(fault: str, target: int) -> None:
    if fault == "ap_exit_at_query":
        step_1a = AnsweringParty.step_1a

        def exit_at_query(self, evaluator, qp, req, pending=None):
            if target in req.query_ids.tolist():
                _exit(self, f"during step 1a of query {target}")
            return step_1a(self, evaluator, qp, req, pending)

        AnsweringParty.step_1a = exit_at_query
    elif fault == "ap_exit_at_argmax":
        step_1b = AnsweringParty.step_1b

        def exit_at_argmax(self, link, pending):
            if target in pending.ids:
                session, k = link.gc(), pending.ids.index(target)
                garble, done = session.argmax_share_garbler, [0]

                def counted(b, m):
                    if done[0] == k:
                        _exit(self, f"during step 1b of query {target}")
                    done[0] += 1
                    return garble(b, m)

                session.argmax_share_garbler = counted
            return step_1b(self, link, pending)

        AnsweringParty.step_1b = exit_at_argmax
    elif fault == "pg_exit_after_query":
        step_3 = PrivacyGuardian.step_3

        def exit_after(self, link, msg):
            settled = step_3(self, link, msg)
            if str(target) in {q for q, _ in settled}:
                _exit(self, f"after settling query {target}")
            return settled

        PrivacyGuardian.step_3 = exit_after
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    fault, _, ident = sys.argv[1].partition("=")
    inject(fault, int(ident))
    from capc.cli import main

    sys.exit(main(sys.argv[2:]))
