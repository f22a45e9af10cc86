#!/usr/bin/env python3
"""Run a CaPC experiment: one querying party, N answering parties and the privacy guardian.

This is the original demo's entry point and accepts its flags (``--n_parties``, ``--encryption_params``,
``--dp_noise_scale``, ...); ``python run_experiment.py --help`` lists them and says where capc differs.
The implementation lives in :mod:`capc.launcher.experiment`.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from capc.launcher.experiment import main as experiment_main
    except ImportError as exc:
        print(f"run_experiment: capc is not installed or incomplete ({exc}).\n"
              "                set it up with: bash scripts/setup.sh   then check: capc doctor",
              file=sys.stderr)
        return 2
    return experiment_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
