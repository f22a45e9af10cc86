"""Runs ``capc.launcher.experiment.main`` with a runner whose parties never finish, for the
Ctrl-C test: prints one line ``PIDS <json>`` once all parties are ready, then waits for them.

SIGINT is set to raise KeyboardInterrupt, as in a program started from a terminal: a process
inherits an *ignored* SIGINT (pytest run as a background job of a non-interactive shell) and Python
then installs no handler, so the simulated Ctrl-C would do nothing -- the one CI failure of this test.
"""

import json
import signal
import sys
from pathlib import Path

from capc.launcher.experiment import main

HERE = Path(__file__).resolve().parent


def runner(config, launcher):
    specs = [launcher.spec(f"ap{i}", "ap", [sys.executable, str(HERE / "dummy_party.py"), "hang"])
             for i in range(config.n_parties)]
    specs.append(launcher.spec("pg", "pg", [sys.executable, str(HERE / "dummy_party.py"),
                                            "stubborn"]))
    handles = launcher.start_parties(specs, timeout=60)
    print("PIDS " + json.dumps({n: h.pid for n, h in handles.items()}), flush=True)
    launcher.wait_done(timeout=120)
    raise AssertionError("unreachable: the parties never finish")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main(sys.argv[1:], runner=runner))
