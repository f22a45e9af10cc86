"""GcSession: one long-lived garbled-circuit 2PC session between two parties over a connected stream.

The querying party (QP) is always the evaluator; an answering party (AP) or the privacy guardian (PG) is
the garbler. The session runs these circuits (see ``gc-emp-test/programs/capc_circuits.h``):

* ``argmax_share`` (step 1b): w = onehot(argmax(a + b)) - m (mod 2^64), learnt by the QP only;
* ``noisy_argmax`` (step 3, Confident-GNMax): ``answered`` = max(W + M) + eta_T >= threshold learnt by both,
  and, when answered, argmax(W + M + eta_G) learnt by the QP only;
* ``relu_share`` and ``maxpool_share`` (the non-linear layers of the HE + garbled-circuit hybrid):
  y = round_shift(relu(a + b), t) - m, or the maximum over windows of ``window`` consecutive values
  instead of relu, learnt by the QP only. ``round_shift(x, t) = floor((x + 2^(t-1)) / 2^t)`` (t >= 1) is the
  fixed-point rescale after a product, rounded to nearest: |round_shift(x, t) - x / 2^t| <= 1/2.

Both sides must call matching methods in the same order; a mismatch raises :class:`GcProtocolError` on
both sides. The handshake and the base OTs run at the first query and are reused by later ones.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from capc.gc.errors import GcError, GcInputError, GcNetworkError
from capc.gc.programs import load_engine

_ROLES = ("garbler", "evaluator")


def _int64_vector(x: Any, name: str) -> np.ndarray:
    """Return x as a 1-D C-contiguous int64 array; reject floats, non-integers and other shapes."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise GcInputError(f"{name} must be a 1-D array of int64, got shape {arr.shape}")
    if arr.size == 0:
        raise GcInputError(f"{name} must not be empty")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        arr = arr.view(np.int64)  # same bits mod 2^64
    elif arr.dtype.kind not in "iu":
        raise GcInputError(f"{name} must hold integers (ring Z_2^64), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _int64_scalar(x: Any, name: str) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise GcInputError(f"{name} must be an integer, got {type(x).__name__}")
    v = int(x)
    if not -(2 ** 63) <= v < 2 ** 63:
        raise GcInputError(f"{name}={v} does not fit in a signed 64-bit integer")
    return v


#: Largest rescale shift of relu_share / maxpool_share (the result keeps at least one bit of magnitude).
MAX_SHIFT = 62


def _shift(x: Any) -> int:
    """Validate the public rescale shift t (0 = no rescale)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or not 0 <= int(x) <= MAX_SHIFT:
        raise GcInputError(f"shift must be an integer in 0..{MAX_SHIFT}, got {x!r}")
    return int(x)


def _window(x: Any, n: int) -> int:
    """Validate the public max-pool window: a positive integer dividing the number of values n."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or int(x) < 1:
        raise GcInputError(f"window must be a positive integer, got {x!r}")
    if n % int(x) != 0:
        raise GcInputError(f"window {int(x)} does not divide the number of values {n}")
    return int(x)


def _widths(in_bits: Any, out_bits: Any, shift: int) -> tuple[int, int]:
    """Validate the public register widths of relu/maxpool: 3 <= in_bits <= out_bits <= 64, and the
    shift must leave a bit of an in_bits value."""
    for name, v in (("in_bits", in_bits), ("out_bits", out_bits)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise GcInputError(f"{name} must be an integer, got {v!r}")
    if not 3 <= int(in_bits) <= int(out_bits) <= 64:
        raise GcInputError(f"register widths must satisfy 3 <= in_bits <= out_bits <= 64, got {in_bits} and {out_bits}")
    if shift > int(in_bits) - 2:
        raise GcInputError(f"shift {shift} does not fit an {in_bits}-bit value")
    return int(in_bits), int(out_bits)


def _flag(x: Any, name: str) -> bool:
    """Validate a public boolean option (a bool, not an int, so that a misplaced argument is caught)."""
    if not isinstance(x, (bool, np.bool_)):
        raise GcInputError(f"{name} must be a bool, got {type(x).__name__}")
    return bool(x)


def _disable_nagle(io: Any) -> None:
    """Turn TCP_NODELAY on for a TCP socket (also an ``ssl.SSLSocket``): the 2PC rounds are small and
    latency bound, and Nagle's algorithm with delayed ACKs would add ~40 ms per round."""
    if isinstance(io, socket.socket) and io.family in (socket.AF_INET, socket.AF_INET6):
        try:
            io.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not fatal: only slower


class GcSession:
    """One long-lived 2PC session between two parties over a connected byte stream."""

    def __init__(self, io: Any, role: str) -> None:
        """Wrap ``io`` (an object with ``sendall(bytes)`` and ``recv_into(buffer) -> int``, e.g. a socket
        or an ``ssl.SSLSocket``) for this party's ``role``: ``"garbler"`` (AP or PG) or ``"evaluator"``
        (QP). Nothing is sent until the first query. A TCP socket gets TCP_NODELAY set."""
        if role not in _ROLES:
            raise GcInputError(f"role must be 'garbler' (AP or PG) or 'evaluator' (QP), got {role!r}")
        for attr in ("sendall", "recv_into"):
            if not callable(getattr(io, attr, None)):
                raise GcInputError(f"io object {type(io).__name__} has no {attr}() method")
        self._role = role
        _disable_nagle(io)
        self._engine_session = load_engine().Session(io, role)

    @property
    def role(self) -> str:
        """``"garbler"`` or ``"evaluator"``."""
        return self._role

    def _call(self, method: str, *args: Any) -> Any:
        if self._engine_session is None:
            raise GcError(f"{method}: the session is closed")
        try:
            return getattr(self._engine_session, method)(*args)
        except GcError:
            raise
        except OSError as exc:  # socket or TLS failure inside an I/O callback
            raise GcNetworkError(f"{method}: the connection to the peer failed: {exc}") from exc

    def argmax_share_evaluator(self, a: np.ndarray) -> np.ndarray:
        """QP side of step 1b: input the logit share ``a`` (int64[C]); return ``w`` (int64[C]) with
        ``w + m = onehot(argmax(a + b))`` (mod 2^64), where ``b, m`` are the garbler's inputs."""
        return self._call("argmax_share_evaluator", _int64_vector(a, "a"))

    def argmax_share_garbler(self, b: np.ndarray, m: np.ndarray) -> None:
        """AP side of step 1b: input the logit share ``b`` and a fresh uniform mask ``m`` (int64[C] each).
        The AP learns nothing; ``m`` is its share of the one-hot vote."""
        b_arr, m_arr = _int64_vector(b, "b"), _int64_vector(m, "m")
        if b_arr.shape != m_arr.shape:
            raise GcInputError(f"b and m must have the same length, got {b_arr.size} and {m_arr.size}")
        self._call("argmax_share_garbler", b_arr, m_arr)

    def noisy_argmax_evaluator(self, W: np.ndarray) -> tuple[bool, int | None]:
        """QP side of step 3: input the vote shares ``W`` (int64[C]); return ``(answered, label)`` with
        ``label`` None when not answered."""
        answered, label = self._call("noisy_argmax_evaluator", _int64_vector(W, "W"))
        return bool(answered), (None if label is None else int(label))

    def noisy_argmax_garbler(self, M: np.ndarray, eta_G: np.ndarray, eta_T: int, threshold: int) -> bool:
        """PG side of step 3: input the vote shares ``M``, the GNMax noise ``eta_G`` (int64[C]), the
        threshold noise ``eta_T`` and the threshold (vote units). Return ``answered``; never the label."""
        m_arr, g_arr = _int64_vector(M, "M"), _int64_vector(eta_G, "eta_G")
        if m_arr.shape != g_arr.shape:
            raise GcInputError(f"M and eta_G must have the same length, got {m_arr.size} and {g_arr.size}")
        return bool(self._call("noisy_argmax_garbler", m_arr, g_arr, _int64_scalar(eta_T, "eta_T"),
                               _int64_scalar(threshold, "threshold")))

    def relu_share_evaluator(self, a: np.ndarray, shift: int = 0, in_bits: int = 64, out_bits: int = 64) -> np.ndarray:
        """QP side of a ReLU layer on additive shares: input the share ``a`` (int64[n], all of a batch's
        activations at once); return ``y`` (int64[n]) with ``y + m = round_shift(relu(a + b), shift)``
        (mod 2^64, ``a + b`` read as signed), where ``b, m`` are the garbler's inputs. The garbler must
        call :meth:`relu_share_garbler` with the same n, shift and widths. With narrow registers
        (``in_bits``, ``out_bits`` < 64) the result is exact while ``|a + b| < 2^(in_bits - 1)`` and
        ``|y| < 2^(out_bits - 1)`` (see ``capc_circuits.h``), at about half the gates."""
        shift = _shift(shift)
        in_bits, out_bits = _widths(in_bits, out_bits, shift)
        return self._call("relu_share_evaluator", _int64_vector(a, "a"), shift, in_bits, out_bits)

    def relu_share_garbler(self, b: np.ndarray, m: np.ndarray, shift: int = 0, in_bits: int = 64,
                           out_bits: int = 64) -> None:
        """AP side of a ReLU layer: input the share ``b`` and the mask ``m`` (int64[n] each), which becomes
        the AP's share of the output. The AP learns nothing."""
        shift = _shift(shift)
        in_bits, out_bits = _widths(in_bits, out_bits, shift)
        b_arr, m_arr = _int64_vector(b, "b"), _int64_vector(m, "m")
        if b_arr.shape != m_arr.shape:
            raise GcInputError(f"b and m must have the same length, got {b_arr.size} and {m_arr.size}")
        self._call("relu_share_garbler", b_arr, m_arr, shift, in_bits, out_bits)

    def maxpool_share_evaluator(self, a: np.ndarray, window: int, shift: int = 0,
                                relu_after: bool = False, in_bits: int = 64, out_bits: int = 64) -> np.ndarray:
        """QP side of a max-pool layer on additive shares: ``a`` (int64[n]) holds k = n / window windows of
        ``window`` consecutive values (the caller lays them out). Return ``y`` (int64[k]) with
        ``y_j + m_j = round_shift(max(v[j*window:(j+1)*window]), shift)``, v = a + b (mod 2^64, signed);
        with ``relu_after`` the maximum is relu'd first. The garbler must pass the same window, shift and
        relu_after."""
        a_arr = _int64_vector(a, "a")
        window, shift = _window(window, a_arr.size), _shift(shift)
        in_bits, out_bits = _widths(in_bits, out_bits, shift)
        return self._call("maxpool_share_evaluator", a_arr, window, shift, _flag(relu_after, "relu_after"),
                          in_bits, out_bits)

    def maxpool_share_garbler(self, b: np.ndarray, m: np.ndarray, window: int, shift: int = 0,
                              relu_after: bool = False, in_bits: int = 64, out_bits: int = 64) -> None:
        """AP side of a max-pool layer: input the share ``b`` (int64[n]) and one mask value per window,
        ``m`` (int64[n / window]). The AP learns nothing."""
        b_arr, m_arr = _int64_vector(b, "b"), _int64_vector(m, "m")
        window, shift = _window(window, b_arr.size), _shift(shift)
        in_bits, out_bits = _widths(in_bits, out_bits, shift)
        if m_arr.size != b_arr.size // window:
            raise GcInputError(f"m must have one entry per window ({b_arr.size // window} windows of {window}), "
                               f"got {m_arr.size}")
        self._call("maxpool_share_garbler", b_arr, m_arr, window, shift, _flag(relu_after, "relu_after"),
                   in_bits, out_bits)

    @property
    def bytes_sent(self) -> int:
        """Bytes this party has sent on the session (all queries, including setup)."""
        return int(self._engine_session.bytes_sent) if self._engine_session is not None else self._final[0]

    @property
    def bytes_received(self) -> int:
        """Bytes this party has received on the session."""
        return int(self._engine_session.bytes_received) if self._engine_session is not None else self._final[1]

    @property
    def queries(self) -> int:
        """Number of completed queries."""
        return int(self._engine_session.queries) if self._engine_session is not None else self._final[2]

    @property
    def and_gates(self) -> int:
        """AND gates garbled (or evaluated) on the session so far; at 32 bytes each they are the bulk of
        the traffic (XOR and NOT are free)."""
        return int(self._engine_session.and_gates) if self._engine_session is not None else self._final[3]

    def close(self) -> None:
        """Release the engine state. The caller still owns (and closes) the io object."""
        if self._engine_session is not None:
            s = self._engine_session
            self._final = (int(s.bytes_sent), int(s.bytes_received), int(s.queries), int(s.and_gates))
            s.close()
            self._engine_session = None

    def __enter__(self) -> "GcSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
