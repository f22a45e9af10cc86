"""capc — Confidential and Private Collaborative learning (CaPC, ICLR 2021), made installable.

Subpackages, one job each:

* :mod:`capc.config` and :mod:`capc.fixedpoint` — validated parameters and the ring Z_2^64;
* :mod:`capc.he` — CKKS keys and encrypted inference of cryptonets-style models (step 1a);
* :mod:`capc.gc` — the garbled-circuit 2PC engine's Python side (steps 1b and 3);
* :mod:`capc.net` — mutual-TLS channels, message framing and schemas;
* :mod:`capc.privacy` — discrete-Gaussian noise, Confident-GNMax, RDP accounting, the budget ledger;
* :mod:`capc.parties` — the querying party, answering parties and privacy guardian processes;
* :mod:`capc.learning` — datasets, partitions, default models, query selection and retraining;
* :mod:`capc.launcher` — the experiment launcher (subprocesses or tmux panes) and run directories.
"""

import os as _os

# TensorFlow's C++ start-up lines (CPU features, oneDNN) would fill every party's log and the
# doctor's output; errors still show. Set before anything imports TensorFlow; a user's value wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from capc.errors import CapcError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["CapcError", "__version__"]
