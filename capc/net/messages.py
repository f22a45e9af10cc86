"""Typed, strictly validated schemas of the messages the CaPC protocol exchanges, and their encoding.

Each message is a frozen dataclass whose fields are declared once, with a :class:`Kind` that drives
validation on construction, encoding and decoding alike. A payload is::

    uint32 (big-endian) header length | UTF-8 JSON header | blob 0 | blob 1 | ...

The JSON header is ``{"f": {field: value, ...}, "b": [len0, len1, ...]}``; bulky fields (HE
ciphertexts, contexts, numpy arrays) live in the raw blobs and are referenced from the fields as
``{"blob": i}`` (arrays add ``"dtype"`` and ``"shape"``). No pickle: decoding only ever produces JSON
scalars, ``bytes`` and numpy arrays of the exact dtype and shape the schema names. Blob lengths must
add up to the payload exactly; unknown or missing fields, wrong types and out-of-range values raise
:class:`SchemaError` (a :class:`~capc.net.errors.ProtocolError`) naming the message and field.

One query is a batch of one: every protocol message carries a list of query ids (docs/design.md §4.2).

* setup: ``Hello`` / ``HelloAck`` (sent by :mod:`capc.net.channel` on connect), ``ModelPlan``
  (AP -> QP, the public layout of the AP's model, no weights), ``PublicContext`` (QP -> AP, the
  CKKS context without the secret key);
* step 1a: ``QueryRequest`` (QP -> AP, Enc(x) for B queries) and ``QueryResult`` (AP -> QP, Enc(z - r));
* step 1b: ``GcStart`` (QP -> AP) opens the argmax circuits of B queries, whose bytes follow on the
  same channel; the AP ends with ``StepDone("vote_shares_sent")`` once step 2 is done;
* step 2: ``VoteShare`` (AP -> PG, the masks m_j as uint64[B, C]);
* step 3: ``NoisyArgmaxRequest`` (QP -> PG) and ``BudgetReserved`` (PG -> QP: how many of the B
  queries were charged; their circuits follow);
* any time: ``StepDone``, ``ErrorReply``, ``Shutdown``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from capc.net.errors import ProtocolError
from capc.net.framing import CONTROL_MAX_PAYLOAD, PROTOCOL_VERSION, MessageType
from capc.net.names import PartyNameError, parse_party_name

MAX_JSON_HEADER = CONTROL_MAX_PAYLOAD
MAX_CLASSES = 65536
MAX_QUERY_ID = 2**63 - 1
MAX_CIPHERTEXTS = 65536
MAX_BATCH = 65536
MAX_PARTIES = 100_000
MAX_TEXT = 4096
MAX_PARAMS = 256

_LEN = struct.Struct(">I")
_IDENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ROLE_RE = re.compile(r"^(qp|ap|pg)$")


class SchemaError(ProtocolError, ValueError):
    """A message field is missing, unknown, of the wrong type or out of range."""


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is a valid run id (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``), else raise
    :class:`SchemaError`."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise SchemaError(f"invalid run id {run_id!r}: expected 1-64 characters [A-Za-z0-9._-] "
                          "starting with a letter or digit")
    return run_id


def _err(msg_name: str, fname: str, problem: str) -> SchemaError:
    return SchemaError(f"{msg_name}.{fname}: {problem}")


def _plain(v: Any) -> Any:
    """Mapping proxies and tuples back to JSON-able dicts and lists."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------- wire helpers


class _Writer:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def blob(self, data: bytes) -> dict[str, int]:
        self.blobs.append(data)
        return {"blob": len(self.blobs) - 1}

    def array(self, a: np.ndarray) -> dict[str, Any]:
        le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        ref: dict[str, Any] = {"dtype": le.dtype.str, "shape": list(le.shape)}
        ref.update(self.blob(le.tobytes()))
        return ref


class _Reader:
    def __init__(self, msg: str, blobs: list[memoryview]) -> None:
        self.msg = msg
        self.blobs = blobs
        self.used = [False] * len(blobs)

    def take(self, f: str, ref: Any, extra: frozenset[str] = frozenset()) -> memoryview:
        if not isinstance(ref, dict) or set(ref) != {"blob"} | extra:
            raise _err(self.msg, f, f"must be a blob reference, got {ref!r:.80}")
        i = ref["blob"]
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.blobs):
            raise _err(self.msg, f, f"blob index {i!r} out of range (have {len(self.blobs)} blobs)")
        if self.used[i]:
            raise _err(self.msg, f, f"blob {i} referenced twice")
        self.used[i] = True
        return self.blobs[i]

    def finish(self) -> None:
        unused = [i for i, u in enumerate(self.used) if not u]
        if unused:
            raise SchemaError(f"{self.msg}: blobs {unused} are not referenced by any field")


# ---------------------------------------------------------------- field kinds


class Kind:
    """How one message field is validated, written into a payload and read back from it.

    ``check`` runs on construction (so decoding, which constructs, validates too); it may look at
    the message's other fields of earlier passes (arrays are checked after scalars)."""

    array = False

    def check(self, m: str, f: str, v: Any, msg: Any) -> Any:
        raise NotImplementedError  # abstract

    def write(self, w: _Writer, v: Any) -> Any:
        return _plain(v)

    def read(self, r: _Reader, f: str, v: Any) -> Any:
        return v


@dataclass(frozen=True)
class Int(Kind):
    lo: int
    hi: int

    def check(self, m: str, f: str, v: Any, msg: Any) -> int:
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
            raise _err(m, f, f"must be an integer, got {type(v).__name__}")
        if not self.lo <= v <= self.hi:
            raise _err(m, f, f"must be in {self.lo}..{self.hi}, got {v}")
        return int(v)


class Bool(Kind):
    def check(self, m: str, f: str, v: Any, msg: Any) -> bool:
        if not isinstance(v, bool):
            raise _err(m, f, f"must be a boolean, got {type(v).__name__}")
        return v


@dataclass(frozen=True)
class Text(Kind):
    max_len: int = MAX_TEXT

    def check(self, m: str, f: str, v: Any, msg: Any) -> str:
        if not isinstance(v, str):
            raise _err(m, f, f"must be a string, got {type(v).__name__}")
        if len(v) > self.max_len:
            raise _err(m, f, f"longer than {self.max_len} characters ({len(v)})")
        return v


@dataclass(frozen=True)
class Pattern(Kind):
    pattern: re.Pattern[str]
    what: str

    def check(self, m: str, f: str, v: Any, msg: Any) -> str:
        if not isinstance(v, str) or not self.pattern.fullmatch(v):
            raise _err(m, f, f"must be {self.what}, got {v!r}")
        return v


IDENT = Pattern(_IDENT_RE, "a lower-case identifier [a-z][a-z0-9_]{0,63}")
RUN_ID = Pattern(_RUN_ID_RE, "a run id [A-Za-z0-9._-]{1,64}")
#: a spooled query's name (its SHA-256, :mod:`capc.parties.spool`), or "" for none
SPOOL_NAME = Pattern(re.compile(r"^([0-9a-f]{64})?$"), "a SHA-256 hex digest or empty")
#: a party's spool token (proves a shared file system), or "" for none
SPOOL_TOKEN = Pattern(re.compile(r"^([0-9a-f]{32})?$"), "32 hex digits or empty")


@dataclass(frozen=True)
class Party(Kind):
    role: str | None = None

    def check(self, m: str, f: str, v: Any, msg: Any) -> str:
        try:
            r, _ = parse_party_name(v)
        except PartyNameError as e:
            raise _err(m, f, str(e)) from None
        if self.role is not None and r != self.role:
            raise _err(m, f, f"must name a {self.role} party, got {v!r}")
        return v


def _bytes(m: str, f: str, v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise _err(m, f, f"must be bytes, got {type(v).__name__}")
    b = bytes(v)
    if not b:
        raise _err(m, f, "must not be empty")
    return b


class Blob(Kind):
    """Non-empty bytes carried as one raw blob."""

    def check(self, m: str, f: str, v: Any, msg: Any) -> bytes:
        return _bytes(m, f, v)

    def write(self, w: _Writer, v: Any) -> Any:
        return w.blob(v)

    def read(self, r: _Reader, f: str, v: Any) -> Any:
        return bytes(r.take(f, v))


@dataclass(frozen=True)
class Blobs(Kind):
    """A tuple of ``min_count``..MAX_CIPHERTEXTS non-empty byte strings, one blob each."""

    min_count: int = 1

    def check(self, m: str, f: str, v: Any, msg: Any) -> tuple[bytes, ...]:
        if isinstance(v, (bytes, bytearray, memoryview, str)) or not isinstance(v, (list, tuple)):
            raise _err(m, f, f"must be a tuple of byte strings, got {type(v).__name__}")
        if not self.min_count <= len(v) <= MAX_CIPHERTEXTS:
            raise _err(m, f, f"must hold {self.min_count}..{MAX_CIPHERTEXTS} items, got {len(v)}")
        return tuple(_bytes(m, f"{f}[{i}]", x) for i, x in enumerate(v))

    def write(self, w: _Writer, v: Any) -> Any:
        return [w.blob(c) for c in v]

    def read(self, r: _Reader, f: str, v: Any) -> Any:
        if not isinstance(v, list):
            raise _err(r.msg, f, "must be a list of blob references")
        if not self.min_count <= len(v) <= MAX_CIPHERTEXTS:
            raise _err(r.msg, f, f"must hold {self.min_count}..{MAX_CIPHERTEXTS} items, got {len(v)}")
        return tuple(bytes(r.take(f"{f}[{i}]", x)) for i, x in enumerate(v))


def _scalar(m: str, f: str, v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        if not -(2**63) <= v < 2**64:
            raise _err(m, f, f"integer {v} does not fit 64 bits")
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise _err(m, f, f"must be finite, got {v}")
        return v
    if isinstance(v, str):
        return Text().check(m, f, v, None)
    raise _err(m, f, f"must be a bool, int, float, string or null, got {type(v).__name__}")


class Params(Kind):
    """A small flat JSON object: identifier keys, scalar or list-of-scalar values (read-only)."""

    def check(self, m: str, f: str, v: Any, msg: Any) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise _err(m, f, f"must be a mapping, got {type(v).__name__}")
        if len(v) > MAX_PARAMS:
            raise _err(m, f, f"more than {MAX_PARAMS} entries")
        out: dict[str, Any] = {}
        for k in sorted(v, key=str):
            IDENT.check(m, f"{f} key", k, msg)
            val = v[k]
            if isinstance(val, (list, tuple)):
                if len(val) > MAX_PARAMS:
                    raise _err(m, f"{f}[{k!r}]", f"list longer than {MAX_PARAMS}")
                out[k] = tuple(_scalar(m, f"{f}[{k!r}]", x) for x in val)
            else:
                out[k] = _scalar(m, f"{f}[{k!r}]", val)
        return types.MappingProxyType(out)


class Code(Kind):
    """An :class:`ErrorCode` value, or empty for "no refusal"."""

    def check(self, m: str, f: str, v: Any, msg: Any) -> str:
        v = v.value if isinstance(v, Enum) else v
        if v not in {"", *(c.value for c in ErrorCode)}:
            raise SchemaError(f"{m}: code {v!r} is not one of {', '.join(c.value for c in ErrorCode)} (or empty)")
        return v


@dataclass(frozen=True)
class U64Array(Kind):
    """A read-only uint64 array. ``shape`` names, per axis, another field whose length (a sequence)
    or value (an integer) the axis must equal, or None for 1..MAX_BATCH; ``lo``/``hi`` bound the
    values and ``unique`` forbids repeats (query ids)."""

    shape: tuple[str | None, ...]
    lo: int = 0
    hi: int = 2**64 - 1
    unique: bool = False
    what: str = "values"
    array = True

    def _expected(self, msg: Any) -> tuple[int, ...] | None:
        dims = []
        for ref in self.shape:
            if ref is None:
                return None
            other = getattr(msg, ref)
            dims.append(len(other) if isinstance(other, (np.ndarray, tuple, list)) else int(other))
        return tuple(dims)

    def check(self, m: str, f: str, v: Any, msg: Any) -> np.ndarray:
        if isinstance(v, (list, tuple)) and len(self.shape) == 1:
            v = np.array(v, dtype=np.uint64)
        if not isinstance(v, np.ndarray):
            raise _err(m, f, f"must be a numpy array, got {type(v).__name__}")
        if v.dtype.kind != "u" or v.dtype.itemsize != 8:
            raise _err(m, f, f"must have dtype uint64, got {v.dtype}")
        want = self._expected(msg)
        if v.ndim != len(self.shape) or (want is not None and v.shape != want):
            names = ", ".join(s or "any" for s in self.shape)
            raise _err(m, f, f"must have shape {want if want is not None else f'({names})'} to match "
                             f"{', '.join(s for s in self.shape if s)}, got {v.shape}")
        if want is None and not 1 <= v.shape[0] <= MAX_BATCH:
            raise _err(m, f, f"must hold 1..{MAX_BATCH} {self.what}, got {v.shape[0]}")
        if v.size and (int(v.min()) < self.lo or int(v.max()) > self.hi):
            raise _err(m, f, f"{self.what} must be in {self.lo}..{self.hi}")
        if self.unique and len(np.unique(v)) != v.size:
            raise _err(m, f, f"repeats a {self.what[:-1] if self.what.endswith('s') else self.what}")
        a = np.array(v, dtype=np.uint64, copy=True)
        a.flags.writeable = False
        return a

    def write(self, w: _Writer, v: Any) -> Any:
        return w.array(v)

    def read(self, r: _Reader, f: str, v: Any) -> Any:
        raw = r.take(f, v, frozenset({"dtype", "shape"}))
        if v["dtype"] != "<u8":
            raise _err(r.msg, f, f"must have dtype '<u8' (uint64), got {v['dtype']!r}")
        shape = v["shape"]
        if (not isinstance(shape, list) or len(shape) != len(self.shape)
                or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_BATCH * MAX_CLASSES
                           for n in shape)):
            raise _err(r.msg, f, f"shape {shape!r:.80} is not a list of {len(self.shape)} sizes")
        count = math.prod(shape)
        if len(raw) != 8 * count:
            raise _err(r.msg, f, f"blob holds {len(raw)} bytes, expected {8 * count}")
        return np.frombuffer(bytes(raw), dtype="<u8").astype(np.uint64, copy=False).reshape(shape)


QUERY_IDS = U64Array(shape=(None,), hi=MAX_QUERY_ID, unique=True, what="query ids")
CLASSES = Int(2, MAX_CLASSES)


def spec(kind: Kind, **kw: Any) -> Any:
    """Declare a message field of ``kind`` (keywords as for :func:`dataclasses.field`)."""
    return field(metadata={"kind": kind}, **kw)


# ---------------------------------------------------------------- messages


class Message:
    """Base class of all capc messages: validation, equality and the wire form come from the fields'
    :class:`Kind` declarations; a subclass adds cross-field rules in :meth:`_check`."""

    TYPE: ClassVar[MessageType]

    def __post_init__(self) -> None:
        m = type(self).__name__
        fs = dataclasses.fields(self)  # type: ignore[arg-type]
        for pass_arrays in (False, True):  # arrays last: their shapes refer to scalar fields
            for fd in fs:
                kind = fd.metadata["kind"]
                if kind.array == pass_arrays:
                    object.__setattr__(self, fd.name, kind.check(m, fd.name, getattr(self, fd.name), self))
        self._check()

    def _check(self) -> None:
        """Cross-field rules (none by default)."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for fd in dataclasses.fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, fd.name), getattr(other, fd.name)
            if isinstance(a, np.ndarray):
                if not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(fd.name for fd in dataclasses.fields(cls))  # type: ignore[arg-type]


def _message(cls: type) -> type:
    """Make ``cls`` a frozen message dataclass (equality from :class:`Message`)."""
    return dataclass(frozen=True, eq=False)(cls)


@_message
class Hello(Message):
    """First message of every connection, client -> server: who I am and which run I belong to."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    party: str = spec(Party())
    role: str = spec(Pattern(_ROLE_RE, "qp, ap or pg"))
    run_id: str = spec(RUN_ID)
    protocol_version: int = spec(Int(1, 65535), default=PROTOCOL_VERSION)

    def _check(self) -> None:
        if parse_party_name(self.party)[0] != self.role:
            raise _err("Hello", "role", f"{self.role!r} does not match party name {self.party!r}")


@_message
class HelloAck(Message):
    """Server -> client reply to :class:`Hello`: the connection is accepted."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO_ACK
    party: str = spec(Party())
    run_id: str = spec(RUN_ID)
    protocol_version: int = spec(Int(1, 65535), default=PROTOCOL_VERSION)


@_message
class ModelPlan(Message):
    """AP -> QP at setup: the public evaluation plan of the AP's model (shapes and packing layout,
    no weights), serialized by :mod:`capc.he`, from which the QP derives the CKKS keys it must send."""

    TYPE: ClassVar[MessageType] = MessageType.MODEL_PLAN
    plan_bytes: bytes = spec(Blob())
    #: where this AP reads spooled queries, and the token it wrote there (:mod:`capc.parties.spool`)
    spool_dir: str = spec(Text(), default="")
    spool_token: str = spec(SPOOL_TOKEN, default="")


@_message
class PublicContext(Message):
    """QP -> AP: the serialized CKKS context holding public, relinearisation and Galois keys only,
    plus a small summary of its parameters (e.g. packing, key id)."""

    TYPE: ClassVar[MessageType] = MessageType.PUBLIC_CONTEXT
    context_bytes: bytes = spec(Blob())
    params: Mapping[str, Any] = spec(Params(), default_factory=dict)


@_message
class QueryRequest(Message):
    """Step 1a, QP -> AP: the queries ``query_ids`` encrypted (one blob per query with single packing,
    one for all of them with batch packing), the number of classes C the AP must return and the logit
    fixed-point scale 2^frac_bits.  With a ReLU / max-pool model (:mod:`capc.he.hybrid`) ``segment``
    k > 0 carries the re-encrypted, AP-masked activations entering CKKS segment k.  Instead of the
    ciphertexts, ``spool`` may name a file in the AP's spool directory holding the one batch blob
    (its SHA-256, checked on reading): APs that share the QP's file system then read one copy."""

    TYPE: ClassVar[MessageType] = MessageType.QUERY_REQUEST
    query_ids: np.ndarray = spec(QUERY_IDS)
    ciphertexts: tuple[bytes, ...] = spec(Blobs(min_count=0))
    num_classes: int = spec(CLASSES)
    frac_bits: int = spec(Int(0, 62))
    segment: int = spec(Int(0, 255), default=0)
    spool: str = spec(SPOOL_NAME, default="")

    def _check(self) -> None:
        if bool(self.ciphertexts) == bool(self.spool):
            raise SchemaError("QueryRequest: carries either ciphertexts or a spooled blob's name, "
                              f"got {len(self.ciphertexts)} ciphertexts and spool {self.spool!r}")


@_message
class QueryResult(Message):
    """Step 1a, AP -> QP: the masked encrypted logits Enc(z_j - r_j) of the request's queries (for
    ``segment`` k before the last of a hybrid model: its masked pre-activations)."""

    TYPE: ClassVar[MessageType] = MessageType.QUERY_RESULT
    query_ids: np.ndarray = spec(QUERY_IDS)
    ciphertexts: tuple[bytes, ...] = spec(Blobs())
    segment: int = spec(Int(0, 255), default=0)


@_message
class GcStart(Message):
    """Begins garbled-circuit 2PC runs of ``program`` for the queries ``query_ids``, in order (step 1b:
    "argmax_share"; inside step 1a of a hybrid model, "relu_share" or "maxpool_share" for the GC
    layer after segment ``options["segment"]``, all of the batch's activations in one run). After
    this message the engine's own bytes flow over the same channel through
    :meth:`capc.net.channel.Channel.raw_io`; framed messages resume when the engine is done.
    ``options`` carries small public parameters (the segment)."""

    TYPE: ClassVar[MessageType] = MessageType.GC_START
    query_ids: np.ndarray = spec(QUERY_IDS)
    program: str = spec(IDENT)
    num_classes: int = spec(CLASSES)
    options: Mapping[str, Any] = spec(Params(), default_factory=dict)


@_message
class VoteShare(Message):
    """Step 2, AP -> PG: the AP's shares m_j (uint64[B, C], ring Z_2^64) of its one-hot votes for the
    queries ``query_ids`` of querying party ``qp_id``."""

    TYPE: ClassVar[MessageType] = MessageType.VOTE_SHARE
    qp_id: str = spec(Party("qp"))
    query_ids: np.ndarray = spec(QUERY_IDS)
    num_classes: int = spec(CLASSES)
    shares: np.ndarray = spec(U64Array(shape=("query_ids", "num_classes")))


@_message
class NoisyArgmaxRequest(Message):
    """Step 3, QP -> PG: Confident-GNMax for every query ``query_ids[k]``, in order, over
    ``n_answering[k]`` vote shares. The PG charges as many leading queries as the budget allows in
    one ledger transaction, answers :class:`BudgetReserved` and runs the circuit once per reserved
    query."""

    TYPE: ClassVar[MessageType] = MessageType.NOISY_ARGMAX_REQUEST
    qp_id: str = spec(Party("qp"))
    query_ids: np.ndarray = spec(QUERY_IDS)
    n_answering: np.ndarray = spec(U64Array(shape=("query_ids",), lo=1, hi=MAX_PARTIES, what="counts"))
    num_classes: int = spec(CLASSES)


class ErrorCode(str, Enum):
    """Typed refusal codes of ``ErrorReply.code`` and ``BudgetReserved.code``: a party acts on the
    code, never on the wording of a message."""

    REFUSED = "refused"  # this request is refused (bad or late input); later ones may succeed
    BUDGET_EXHAUSTED = "budget_exhausted"  # the QP's privacy budget cannot pay for this query: stop asking
    REPLAYED = "replayed"  # this query id was used before; other ids are unaffected
    PROTOCOL_ERROR = "protocol_error"  # a malformed or unexpected frame; the channel is closed


@_message
class BudgetReserved(Message):
    """Step 3, PG -> QP: the first ``reserved`` queries of the request are charged to the ledger and
    their circuits follow; the others were refused for ``reason`` with the :class:`ErrorCode` value
    ``code`` (both empty when all were reserved)."""

    TYPE: ClassVar[MessageType] = MessageType.BUDGET_RESERVED
    reserved: int = spec(Int(0, MAX_BATCH))
    reason: str = spec(Text(), default="")
    code: str = spec(Code(), default="")

    def _check(self) -> None:
        if bool(self.code) != bool(self.reason):
            raise SchemaError("BudgetReserved: a refusal needs both a code and a reason (or neither)")


@_message
class StepDone(Message):
    """A protocol step finished (``step`` is an identifier such as "vote_shares_sent") for the query
    ``query_id`` (0 for set-up steps); ``ok`` is false when it finished without a result."""

    TYPE: ClassVar[MessageType] = MessageType.STEP_DONE
    query_id: int = spec(Int(0, MAX_QUERY_ID))
    step: str = spec(IDENT)
    ok: bool = spec(Bool(), default=True)
    detail: str = spec(Text(), default="")


@_message
class ErrorReply(Message):
    """The sender cannot go on: ``code`` is an identifier (an :class:`ErrorCode` value, or a
    connection refusal such as "peer_not_allowed"), ``message`` a human-readable explanation."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR_REPLY
    code: str = spec(IDENT)
    message: str = spec(Text())


@_message
class Shutdown(Message):
    """The sender is finished with this channel and will close it."""

    TYPE: ClassVar[MessageType] = MessageType.SHUTDOWN
    reason: str = spec(Text(), default="")


MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    c.TYPE: c for c in (Hello, HelloAck, PublicContext, QueryRequest, QueryResult, GcStart, VoteShare,
                        NoisyArgmaxRequest, BudgetReserved, StepDone, ErrorReply, Shutdown, ModelPlan)
}
assert set(MESSAGE_CLASSES) == set(MessageType)


# ---------------------------------------------------------------- encode / decode


def _exact_fields(msg: str, fields: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise SchemaError(f"{msg}: fields must be a JSON object")
    missing = [n for n in names if n not in fields]
    extra = sorted(set(fields) - set(names))
    if missing:
        raise SchemaError(f"{msg}: missing field(s) {', '.join(missing)}")
    if extra:
        raise SchemaError(f"{msg}: unknown field(s) {', '.join(extra)}")
    return fields


def encode_message(msg: Message) -> tuple[MessageType, bytes]:
    """Return ``(type, payload)`` for a message."""
    if not isinstance(msg, Message) or type(msg) not in MESSAGE_CLASSES.values():
        raise SchemaError(f"not a capc message: {type(msg).__name__}")
    w = _Writer()
    fields = {fd.name: fd.metadata["kind"].write(w, getattr(msg, fd.name))
              for fd in dataclasses.fields(msg)}  # type: ignore[arg-type]
    head = json.dumps({"f": fields, "b": [len(b) for b in w.blobs]}, separators=(",", ":"),
                      allow_nan=False, ensure_ascii=True).encode("ascii")
    if len(head) > MAX_JSON_HEADER:
        raise SchemaError(f"{type(msg).__name__}: JSON header of {len(head)} bytes exceeds "
                          f"{MAX_JSON_HEADER}")
    return msg.TYPE, b"".join([_LEN.pack(len(head)), head, *w.blobs])


def _no_dup_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise SchemaError(f"duplicate JSON key {k!r}")
        d[k] = v
    return d


def _reject_constant(name: str) -> Any:
    raise SchemaError(f"non-finite number {name} in JSON header")


def decode_message(mtype: MessageType | int, payload: bytes | bytearray | memoryview) -> Message:
    """Decode and validate a payload of type ``mtype``; raise :class:`SchemaError` if anything is off."""
    try:
        cls = MESSAGE_CLASSES[MessageType(mtype)]
    except ValueError:
        raise ProtocolError(f"unknown message type code {mtype}") from None
    name = cls.__name__
    view = memoryview(payload)
    if len(view) < _LEN.size:
        raise SchemaError(f"{name}: payload of {len(view)} bytes is shorter than its header length")
    (hlen,) = _LEN.unpack(view[:_LEN.size])
    if hlen > MAX_JSON_HEADER or _LEN.size + hlen > len(view):
        raise SchemaError(f"{name}: JSON header length {hlen} is invalid for a payload of "
                          f"{len(view)} bytes")
    try:
        head = json.loads(bytes(view[_LEN.size:_LEN.size + hlen]).decode("utf-8"),
                          object_pairs_hook=_no_dup_object, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SchemaError(f"{name}: JSON header is malformed: {e}") from None
    if not isinstance(head, dict) or set(head) != {"f", "b"}:
        raise SchemaError(f"{name}: JSON header must be an object with keys 'f' and 'b'")
    lens = head["b"]
    if not isinstance(lens, list) or not all(isinstance(n, int) and not isinstance(n, bool)
                                             and n >= 0 for n in lens):
        raise SchemaError(f"{name}: blob lengths must be a list of non-negative integers")
    body = view[_LEN.size + hlen:]
    if sum(lens) != len(body):
        raise SchemaError(f"{name}: blob lengths add up to {sum(lens)} bytes but {len(body)} follow "
                          "the header")
    blobs, off = [], 0
    for n in lens:
        blobs.append(body[off:off + n])
        off += n
    fields = _exact_fields(name, head["f"], cls.field_names())
    r = _Reader(name, blobs)
    try:
        msg = cls(**{fd.name: fd.metadata["kind"].read(r, fd.name, fields[fd.name])
                     for fd in dataclasses.fields(cls)})  # type: ignore[arg-type]
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise SchemaError(f"{name}: invalid fields: {e}") from None
    r.finish()
    return msg
