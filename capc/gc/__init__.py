"""capc.gc — the Python side of CaPC's garbled-circuit 2PC (steps 1b and 3, and the non-linear layers of
the HE + garbled-circuit hybrid).

* :class:`GcSession` runs ``argmax_share`` and ``noisy_argmax``, and ``relu_share`` / ``maxpool_share``
  (ReLU and max-pool on additive shares, with an optional rounded rescale shift) over an
  already-connected stream (e.g. the parties' mutual-TLS socket) with the compiled engine
  ``capc.gc._engine``;
* :func:`program_path` finds the standalone programs in ``gc-emp-test/bin`` (``$CAPC_GC_BIN`` overrides);
* :func:`engine_available` tells whether the compiled module is importable.

The engine itself (C++17, OpenSSL libcrypto) lives in ``gc-emp-test/``; see its README for the protocol.
"""

from capc.gc.errors import (GcEngineMissing, GcError, GcInputError, GcNetworkError,
                            GcProtocolError)
from capc.gc.programs import engine_available, program_path
from capc.gc.session import GcSession

__all__ = [
    "GcSession", "engine_available", "program_path",
    "GcError", "GcInputError", "GcNetworkError", "GcProtocolError", "GcEngineMissing",
]
