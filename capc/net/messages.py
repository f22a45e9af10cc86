"""Typed, strictly validated schemas of the messages the CaPC protocol exchanges, and their encoding.

Each message is a frozen dataclass validated on construction and on decoding. A payload is::

    uint32 (big-endian) header length | UTF-8 JSON header | blob 0 | blob 1 | ...

The JSON header is ``{"f": {field: value, ...}, "b": [len0, len1, ...]}``; bulky fields (HE
ciphertexts, contexts, numpy arrays) live in the raw blobs and are referenced from the fields as
``{"blob": i}`` (arrays add ``"dtype"`` and ``"shape"``). No pickle: decoding only ever produces JSON
scalars, ``bytes`` and numpy arrays of the exact dtype and shape the schema names. Blob lengths must
add up to the payload exactly; unknown or missing fields, wrong types and out-of-range values raise
:class:`SchemaError` (a :class:`~capc.net.errors.ProtocolError`) naming the message and field.

Protocol steps (DESIGN §4) and the messages they use:

* setup: ``Hello`` / ``HelloAck`` (sent by :mod:`capc.net.channel` on connect), ``ModelPlan``
  (AP -> QP, the public layout of the AP's model, no weights), ``PublicContext`` (QP -> AP, the
  CKKS context without the secret key);
* step 1a: ``QueryRequest`` (QP -> AP, Enc(x)) and ``QueryResult`` (AP -> QP, Enc(z - r));
* step 1b / 3: ``GcStart`` opens a garbled-circuit run whose bytes follow on the same channel;
* step 2: ``VoteShare`` (AP -> PG, the mask m_j as uint64[C]);
* step 3: ``NoisyArgmaxRequest`` (QP -> PG);
* any time: ``StepDone``, ``ErrorReply``, ``Shutdown``.
"""

from __future__ import annotations

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


# ---------------------------------------------------------------- field checks


def _err(msg_name: str, fname: str, problem: str) -> SchemaError:
    return SchemaError(f"{msg_name}.{fname}: {problem}")


def _check_int(m: str, f: str, v: Any, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _err(m, f, f"must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise _err(m, f, f"must be in {lo}..{hi}, got {v}")
    return int(v)


def _check_bool(m: str, f: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _err(m, f, f"must be a boolean, got {type(v).__name__}")
    return v


def _check_text(m: str, f: str, v: Any, max_len: int = MAX_TEXT, allow_empty: bool = True) -> str:
    if not isinstance(v, str):
        raise _err(m, f, f"must be a string, got {type(v).__name__}")
    if len(v) > max_len:
        raise _err(m, f, f"longer than {max_len} characters ({len(v)})")
    if not allow_empty and not v:
        raise _err(m, f, "must not be empty")
    return v


def _check_pattern(m: str, f: str, v: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(v, str) or not pattern.fullmatch(v):
        raise _err(m, f, f"must be {what}, got {v!r}")
    return v


def _check_ident(m: str, f: str, v: Any) -> str:
    return _check_pattern(m, f, v, _IDENT_RE, "a lower-case identifier [a-z][a-z0-9_]{0,63}")


def _check_party(m: str, f: str, v: Any, role: str | None = None) -> str:
    try:
        r, _ = parse_party_name(v)
    except PartyNameError as e:
        raise _err(m, f, str(e)) from None
    if role is not None and r != role:
        raise _err(m, f, f"must name a {role} party, got {v!r}")
    return v


def _check_bytes(m: str, f: str, v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise _err(m, f, f"must be bytes, got {type(v).__name__}")
    b = bytes(v)
    if not b:
        raise _err(m, f, "must not be empty")
    return b


def _check_blob_tuple(m: str, f: str, v: Any) -> tuple[bytes, ...]:
    if isinstance(v, (bytes, bytearray, memoryview, str)) or not isinstance(v, (list, tuple)):
        raise _err(m, f, f"must be a tuple of byte strings, got {type(v).__name__}")
    if not 1 <= len(v) <= MAX_CIPHERTEXTS:
        raise _err(m, f, f"must hold 1..{MAX_CIPHERTEXTS} items, got {len(v)}")
    return tuple(_check_bytes(m, f"{f}[{i}]", x) for i, x in enumerate(v))


def _check_scalar_value(m: str, f: str, v: Any) -> Any:
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
        return _check_text(m, f, v)
    raise _err(m, f, f"must be a bool, int, float, string or null, got {type(v).__name__}")


def _check_mapping(m: str, f: str, v: Any) -> Mapping[str, Any]:
    """A small flat JSON object: identifier keys, scalar or list-of-scalar values."""
    if not isinstance(v, Mapping):
        raise _err(m, f, f"must be a mapping, got {type(v).__name__}")
    if len(v) > MAX_PARAMS:
        raise _err(m, f, f"more than {MAX_PARAMS} entries")
    out: dict[str, Any] = {}
    for k in sorted(v, key=str):
        _check_ident(m, f"{f} key", k)
        val = v[k]
        if isinstance(val, (list, tuple)):
            if len(val) > MAX_PARAMS:
                raise _err(m, f"{f}[{k!r}]", f"list longer than {MAX_PARAMS}")
            out[k] = tuple(_check_scalar_value(m, f"{f}[{k!r}]", x) for x in val)
        else:
            out[k] = _check_scalar_value(m, f"{f}[{k!r}]", val)
    return types.MappingProxyType(out)


def _check_uint64_vector(m: str, f: str, v: Any, length: int) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise _err(m, f, f"must be a numpy array, got {type(v).__name__}")
    if v.dtype.kind != "u" or v.dtype.itemsize != 8:
        raise _err(m, f, f"must have dtype uint64, got {v.dtype}")
    if v.shape != (length,):
        raise _err(m, f, f"must have shape ({length},) to match num_classes, got {v.shape}")
    a = np.array(v, dtype=np.uint64, copy=True)
    a.flags.writeable = False
    return a


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

    def _take(self, f: str, ref: Any, extra: set[str] = frozenset()) -> memoryview:  # type: ignore[assignment]
        if not isinstance(ref, dict) or set(ref) != {"blob"} | extra:
            raise _err(self.msg, f, f"must be a blob reference, got {ref!r:.80}")
        i = ref["blob"]
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.blobs):
            raise _err(self.msg, f, f"blob index {i!r} out of range (have {len(self.blobs)} blobs)")
        if self.used[i]:
            raise _err(self.msg, f, f"blob {i} referenced twice")
        self.used[i] = True
        return self.blobs[i]

    def blob(self, f: str, ref: Any) -> bytes:
        return bytes(self._take(f, ref))

    def blob_tuple(self, f: str, refs: Any) -> tuple[bytes, ...]:
        if not isinstance(refs, list):
            raise _err(self.msg, f, "must be a list of blob references")
        if not 1 <= len(refs) <= MAX_CIPHERTEXTS:
            raise _err(self.msg, f, f"must hold 1..{MAX_CIPHERTEXTS} items, got {len(refs)}")
        return tuple(self.blob(f"{f}[{i}]", r) for i, r in enumerate(refs))

    def uint64_vector(self, f: str, ref: Any, length: int) -> np.ndarray:
        raw = self._take(f, ref, {"dtype", "shape"})
        if ref["dtype"] != "<u8":
            raise _err(self.msg, f, f"must have dtype '<u8' (uint64), got {ref['dtype']!r}")
        if ref["shape"] != [length]:
            raise _err(self.msg, f, f"must have shape [{length}] to match num_classes, "
                                    f"got {ref['shape']!r}")
        if len(raw) != 8 * length:
            raise _err(self.msg, f, f"blob holds {len(raw)} bytes, expected {8 * length}")
        a = np.frombuffer(bytes(raw), dtype="<u8").astype(np.uint64, copy=False)
        a.flags.writeable = False
        return a

    def finish(self) -> None:
        unused = [i for i, u in enumerate(self.used) if not u]
        if unused:
            raise SchemaError(f"{self.msg}: blobs {unused} are not referenced by any field")


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


# ---------------------------------------------------------------- messages


class Message:
    """Base class of all capc messages."""

    TYPE: ClassVar[MessageType]

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        raise NotImplementedError  # abstract: every message class defines its fields

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> Message:
        raise NotImplementedError  # abstract: every message class defines its fields


def _json_fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: _plain(getattr(obj, n)) for n in names}


@dataclass(frozen=True)
class Hello(Message):
    """First message of every connection, client -> server: who I am and which run I belong to."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    _F: ClassVar[tuple[str, ...]] = ("party", "role", "run_id", "protocol_version")
    party: str
    role: str
    run_id: str
    protocol_version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_party("Hello", "party", self.party)
        _check_pattern("Hello", "role", self.role, _ROLE_RE, "qp, ap or pg")
        if parse_party_name(self.party)[0] != self.role:
            raise _err("Hello", "role", f"{self.role!r} does not match party name {self.party!r}")
        _check_pattern("Hello", "run_id", self.run_id, _RUN_ID_RE, "a run id [A-Za-z0-9._-]{1,64}")
        _check_int("Hello", "protocol_version", self.protocol_version, 1, 65535)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> Hello:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True)
class HelloAck(Message):
    """Server -> client reply to :class:`Hello`: the connection is accepted."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO_ACK
    _F: ClassVar[tuple[str, ...]] = ("party", "run_id", "protocol_version")
    party: str
    run_id: str
    protocol_version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_party("HelloAck", "party", self.party)
        _check_pattern("HelloAck", "run_id", self.run_id, _RUN_ID_RE, "a run id [A-Za-z0-9._-]{1,64}")
        _check_int("HelloAck", "protocol_version", self.protocol_version, 1, 65535)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> HelloAck:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True)
class ModelPlan(Message):
    """AP -> QP at setup: the public evaluation plan of the AP's model (shapes and packing layout,
    no weights), serialized by :mod:`capc.he`, from which the QP derives the CKKS keys it must send."""

    TYPE: ClassVar[MessageType] = MessageType.MODEL_PLAN
    _F: ClassVar[tuple[str, ...]] = ("plan_bytes",)
    plan_bytes: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan_bytes", _check_bytes("ModelPlan", "plan_bytes", self.plan_bytes))

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"plan_bytes": w.blob(self.plan_bytes)}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> ModelPlan:
        return cls(plan_bytes=r.blob("plan_bytes", f["plan_bytes"]))


@dataclass(frozen=True)
class PublicContext(Message):
    """QP -> AP: the serialized CKKS context holding public, relinearisation and Galois keys only,
    plus a small summary of its parameters (e.g. poly_modulus_degree, coeff_mod_bit_sizes, scale)
    so the AP can validate them before deserialising."""

    TYPE: ClassVar[MessageType] = MessageType.PUBLIC_CONTEXT
    context_bytes: bytes
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "context_bytes",
                           _check_bytes("PublicContext", "context_bytes", self.context_bytes))
        object.__setattr__(self, "params", _check_mapping("PublicContext", "params", self.params))

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"context_bytes": w.blob(self.context_bytes), "params": _plain(self.params)}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> PublicContext:
        return cls(context_bytes=r.blob("context_bytes", f["context_bytes"]), params=f["params"])

    _F: ClassVar[tuple[str, ...]] = ("context_bytes", "params")


@dataclass(frozen=True)
class QueryRequest(Message):
    """Step 1a, QP -> AP: the encrypted query Enc(x) as one or more serialized ciphertexts, the number
    of classes C the AP must return and the logit fixed-point scale 2^frac_bits."""

    TYPE: ClassVar[MessageType] = MessageType.QUERY_REQUEST
    _F: ClassVar[tuple[str, ...]] = ("query_id", "ciphertexts", "num_classes", "frac_bits")
    query_id: int
    ciphertexts: tuple[bytes, ...]
    num_classes: int
    frac_bits: int

    def __post_init__(self) -> None:
        m = "QueryRequest"
        _check_int(m, "query_id", self.query_id, 0, MAX_QUERY_ID)
        object.__setattr__(self, "ciphertexts", _check_blob_tuple(m, "ciphertexts", self.ciphertexts))
        _check_int(m, "num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_int(m, "frac_bits", self.frac_bits, 0, 62)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"query_id": self.query_id, "ciphertexts": [w.blob(c) for c in self.ciphertexts],
                "num_classes": self.num_classes, "frac_bits": self.frac_bits}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> QueryRequest:
        return cls(query_id=f["query_id"], ciphertexts=r.blob_tuple("ciphertexts", f["ciphertexts"]),
                   num_classes=f["num_classes"], frac_bits=f["frac_bits"])


@dataclass(frozen=True, eq=False)
class BatchQueryRequest(Message):
    """Step 1a with batch packing, QP -> AP: many queries in the slots of one encrypted batch.
    ``query_ids[k]`` is the id of the query in slot k; the AP answers with one ``QueryResult``
    whose ``query_id`` is ``batch_id``, then runs one ``GcStart`` per query id."""

    TYPE: ClassVar[MessageType] = MessageType.BATCH_QUERY_REQUEST
    _F: ClassVar[tuple[str, ...]] = ("batch_id", "batch_size", "query_ids", "ciphertexts", "num_classes",
                                     "frac_bits")
    batch_id: int
    batch_size: int
    query_ids: np.ndarray
    ciphertexts: tuple[bytes, ...]
    num_classes: int
    frac_bits: int

    def __post_init__(self) -> None:
        m = "BatchQueryRequest"
        _check_int(m, "batch_id", self.batch_id, 0, MAX_QUERY_ID)
        _check_int(m, "batch_size", self.batch_size, 1, MAX_BATCH)
        ids = _check_uint64_vector(m, "query_ids", self.query_ids, self.batch_size)
        if len(np.unique(ids)) != len(ids):
            raise _err(m, "query_ids", "repeats a query id")
        if int(ids.max()) > MAX_QUERY_ID:
            raise _err(m, "query_ids", f"ids must be at most {MAX_QUERY_ID}")
        object.__setattr__(self, "query_ids", ids)
        object.__setattr__(self, "ciphertexts", _check_blob_tuple(m, "ciphertexts", self.ciphertexts))
        _check_int(m, "num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_int(m, "frac_bits", self.frac_bits, 0, 62)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchQueryRequest):
            return NotImplemented
        return (self.batch_id, self.batch_size, self.ciphertexts, self.num_classes, self.frac_bits) == (
            other.batch_id, other.batch_size, other.ciphertexts, other.num_classes, other.frac_bits) \
            and np.array_equal(self.query_ids, other.query_ids)

    __hash__ = None  # type: ignore[assignment]

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "batch_size": self.batch_size, "query_ids": w.array(self.query_ids),
                "ciphertexts": [w.blob(c) for c in self.ciphertexts], "num_classes": self.num_classes,
                "frac_bits": self.frac_bits}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> BatchQueryRequest:
        n = _check_int("BatchQueryRequest", "batch_size", f["batch_size"], 1, MAX_BATCH)
        return cls(batch_id=f["batch_id"], batch_size=n, query_ids=r.uint64_vector("query_ids", f["query_ids"], n),
                   ciphertexts=r.blob_tuple("ciphertexts", f["ciphertexts"]), num_classes=f["num_classes"],
                   frac_bits=f["frac_bits"])


@dataclass(frozen=True)
class QueryResult(Message):
    """Step 1a, AP -> QP: the masked encrypted logits Enc(z_j - r_j) as serialized ciphertexts."""

    TYPE: ClassVar[MessageType] = MessageType.QUERY_RESULT
    _F: ClassVar[tuple[str, ...]] = ("query_id", "ciphertexts")
    query_id: int
    ciphertexts: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_int("QueryResult", "query_id", self.query_id, 0, MAX_QUERY_ID)
        object.__setattr__(self, "ciphertexts",
                           _check_blob_tuple("QueryResult", "ciphertexts", self.ciphertexts))

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"query_id": self.query_id, "ciphertexts": [w.blob(c) for c in self.ciphertexts]}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> QueryResult:
        return cls(query_id=f["query_id"], ciphertexts=r.blob_tuple("ciphertexts", f["ciphertexts"]))


@dataclass(frozen=True)
class GcStart(Message):
    """Begins a garbled-circuit 2PC run (step 1b: ``program`` e.g. "argmax_share"; step 3: e.g.
    "noisy_argmax"). After this message the engine's own bytes flow over the same channel through
    :meth:`capc.net.channel.Channel.raw_io`; framed messages resume when the engine is done.
    ``options`` carries small public parameters of the run (bit widths, scales)."""

    TYPE: ClassVar[MessageType] = MessageType.GC_START
    _F: ClassVar[tuple[str, ...]] = ("query_id", "program", "num_classes", "options")
    query_id: int
    program: str
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_int("GcStart", "query_id", self.query_id, 0, MAX_QUERY_ID)
        _check_ident("GcStart", "program", self.program)
        _check_int("GcStart", "num_classes", self.num_classes, 2, MAX_CLASSES)
        object.__setattr__(self, "options", _check_mapping("GcStart", "options", self.options))

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> GcStart:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True, eq=False)
class VoteShare(Message):
    """Step 2, AP -> PG: the AP's share m_j (uint64[C], ring Z_2^64) of the one-hot vote for query
    ``query_id`` of querying party ``qp_id``."""

    TYPE: ClassVar[MessageType] = MessageType.VOTE_SHARE
    _F: ClassVar[tuple[str, ...]] = ("qp_id", "query_id", "num_classes", "share")
    qp_id: str
    query_id: int
    num_classes: int
    share: np.ndarray

    def __post_init__(self) -> None:
        _check_party("VoteShare", "qp_id", self.qp_id, "qp")
        _check_int("VoteShare", "query_id", self.query_id, 0, MAX_QUERY_ID)
        _check_int("VoteShare", "num_classes", self.num_classes, 2, MAX_CLASSES)
        object.__setattr__(self, "share",
                           _check_uint64_vector("VoteShare", "share", self.share, self.num_classes))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VoteShare):
            return NotImplemented
        return (self.qp_id, self.query_id, self.num_classes) == (
            other.qp_id, other.query_id, other.num_classes) and np.array_equal(self.share, other.share)

    __hash__ = None  # type: ignore[assignment]

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"qp_id": self.qp_id, "query_id": self.query_id, "num_classes": self.num_classes,
                "share": w.array(self.share)}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> VoteShare:
        c = _check_int("VoteShare", "num_classes", f["num_classes"], 2, MAX_CLASSES)
        return cls(qp_id=f["qp_id"], query_id=f["query_id"], num_classes=c,
                   share=r.uint64_vector("share", f["share"], c))


@dataclass(frozen=True)
class NoisyArgmaxRequest(Message):
    """Step 3, QP -> PG: run Confident-GNMax for ``query_id`` over ``n_answering`` vote shares."""

    TYPE: ClassVar[MessageType] = MessageType.NOISY_ARGMAX_REQUEST
    _F: ClassVar[tuple[str, ...]] = ("qp_id", "query_id", "n_answering", "num_classes")
    qp_id: str
    query_id: int
    n_answering: int
    num_classes: int

    def __post_init__(self) -> None:
        m = "NoisyArgmaxRequest"
        _check_party(m, "qp_id", self.qp_id, "qp")
        _check_int(m, "query_id", self.query_id, 0, MAX_QUERY_ID)
        _check_int(m, "n_answering", self.n_answering, 1, MAX_PARTIES)
        _check_int(m, "num_classes", self.num_classes, 2, MAX_CLASSES)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> NoisyArgmaxRequest:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True, eq=False)
class NoisyArgmaxBatchRequest(Message):
    """Step 3 with batch packing, QP -> PG: Confident-GNMax for every query of a batch, in order,
    query ``query_ids[k]`` over ``n_answering[k]`` vote shares. The PG charges as many of them as the
    budget allows in one ledger transaction, answers ``BudgetReserved`` and then runs the circuit
    once per reserved query (no ``GcStart`` in between)."""

    TYPE: ClassVar[MessageType] = MessageType.NOISY_ARGMAX_BATCH_REQUEST
    _F: ClassVar[tuple[str, ...]] = ("qp_id", "batch_size", "query_ids", "n_answering", "num_classes")
    qp_id: str
    batch_size: int
    query_ids: np.ndarray
    n_answering: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        m = "NoisyArgmaxBatchRequest"
        _check_party(m, "qp_id", self.qp_id, "qp")
        _check_int(m, "batch_size", self.batch_size, 1, MAX_BATCH)
        ids = _check_uint64_vector(m, "query_ids", self.query_ids, self.batch_size)
        if len(np.unique(ids)) != len(ids):
            raise _err(m, "query_ids", "repeats a query id")
        if int(ids.max()) > MAX_QUERY_ID:
            raise _err(m, "query_ids", f"ids must be at most {MAX_QUERY_ID}")
        n = _check_uint64_vector(m, "n_answering", self.n_answering, self.batch_size)
        if int(n.min()) < 1 or int(n.max()) > MAX_PARTIES:
            raise _err(m, "n_answering", f"every count must be in 1..{MAX_PARTIES}")
        object.__setattr__(self, "query_ids", ids)
        object.__setattr__(self, "n_answering", n)
        _check_int(m, "num_classes", self.num_classes, 2, MAX_CLASSES)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoisyArgmaxBatchRequest):
            return NotImplemented
        return (self.qp_id, self.batch_size, self.num_classes) == (other.qp_id, other.batch_size, other.num_classes) \
            and np.array_equal(self.query_ids, other.query_ids) and np.array_equal(self.n_answering, other.n_answering)

    __hash__ = None  # type: ignore[assignment]

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return {"qp_id": self.qp_id, "batch_size": self.batch_size, "query_ids": w.array(self.query_ids),
                "n_answering": w.array(self.n_answering), "num_classes": self.num_classes}

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> NoisyArgmaxBatchRequest:
        n = _check_int("NoisyArgmaxBatchRequest", "batch_size", f["batch_size"], 1, MAX_BATCH)
        return cls(qp_id=f["qp_id"], batch_size=n, query_ids=r.uint64_vector("query_ids", f["query_ids"], n),
                   n_answering=r.uint64_vector("n_answering", f["n_answering"], n), num_classes=f["num_classes"])


class ErrorCode(str, Enum):
    """Typed refusal codes of ``ErrorReply.code`` and ``BudgetReserved.code``: a party acts on the
    code, never on the wording of a message."""

    REFUSED = "refused"  # this request is refused (bad or late input); later ones may succeed
    BUDGET_EXHAUSTED = "budget_exhausted"  # the QP's privacy budget cannot pay for this query: stop asking
    REPLAYED = "replayed"  # this query id was used before; other ids are unaffected
    PROTOCOL_ERROR = "protocol_error"  # a malformed or unexpected frame; the channel is closed


@dataclass(frozen=True)
class BudgetReserved(Message):
    """Step 3 with batch packing, PG -> QP: the first ``reserved`` queries of the batch that starts
    with ``batch_id`` are charged to the ledger and their circuits follow; the others were refused
    for ``reason`` with the :class:`ErrorCode` value ``code`` (both empty when all were reserved)."""

    TYPE: ClassVar[MessageType] = MessageType.BUDGET_RESERVED
    _F: ClassVar[tuple[str, ...]] = ("batch_id", "reserved", "reason", "code")
    batch_id: int
    reserved: int
    reason: str = ""
    code: str = ""

    def __post_init__(self) -> None:
        _check_int("BudgetReserved", "batch_id", self.batch_id, 0, MAX_QUERY_ID)
        _check_int("BudgetReserved", "reserved", self.reserved, 0, MAX_BATCH)
        _check_text("BudgetReserved", "reason", self.reason)
        if self.code not in {"", *(c.value for c in ErrorCode)}:
            raise SchemaError(f"BudgetReserved: code {self.code!r} is not one of "
                              f"{', '.join(c.value for c in ErrorCode)} (or empty)")
        if bool(self.code) != bool(self.reason):
            raise SchemaError("BudgetReserved: a refusal needs both a code and a reason (or neither)")

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> BudgetReserved:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True)
class StepDone(Message):
    """A protocol step finished for ``query_id`` (``step`` is an identifier such as "vote_share");
    ``ok`` is false when the step finished without a result (e.g. a query the PG did not answer)."""

    TYPE: ClassVar[MessageType] = MessageType.STEP_DONE
    _F: ClassVar[tuple[str, ...]] = ("query_id", "step", "ok", "detail")
    query_id: int
    step: str
    ok: bool = True
    detail: str = ""

    def __post_init__(self) -> None:
        _check_int("StepDone", "query_id", self.query_id, 0, MAX_QUERY_ID)
        _check_ident("StepDone", "step", self.step)
        _check_bool("StepDone", "ok", self.ok)
        _check_text("StepDone", "detail", self.detail)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> StepDone:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True)
class ErrorReply(Message):
    """The sender cannot go on: ``code`` is an identifier (e.g. "budget_exhausted",
    "protocol_error", "peer_not_allowed"), ``message`` a human-readable explanation."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR_REPLY
    _F: ClassVar[tuple[str, ...]] = ("code", "message")
    code: str
    message: str

    def __post_init__(self) -> None:
        _check_ident("ErrorReply", "code", self.code)
        _check_text("ErrorReply", "message", self.message)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> ErrorReply:
        return cls(**{n: f[n] for n in cls._F})


@dataclass(frozen=True)
class Shutdown(Message):
    """The sender is finished with this channel and will close it."""

    TYPE: ClassVar[MessageType] = MessageType.SHUTDOWN
    _F: ClassVar[tuple[str, ...]] = ("reason",)
    reason: str = ""

    def __post_init__(self) -> None:
        _check_text("Shutdown", "reason", self.reason)

    def _encode_fields(self, w: _Writer) -> dict[str, Any]:
        return _json_fields(self, self._F)

    @classmethod
    def _decode_fields(cls, f: dict[str, Any], r: _Reader) -> Shutdown:
        return cls(**{n: f[n] for n in cls._F})


MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    c.TYPE: c for c in (Hello, HelloAck, PublicContext, QueryRequest, BatchQueryRequest, QueryResult, GcStart,
                        VoteShare, NoisyArgmaxRequest, NoisyArgmaxBatchRequest, BudgetReserved, StepDone,
                        ErrorReply, Shutdown, ModelPlan)
}
assert set(MESSAGE_CLASSES) == set(MessageType)


# ---------------------------------------------------------------- encode / decode


def encode_message(msg: Message) -> tuple[MessageType, bytes]:
    """Return ``(type, payload)`` for a message."""
    if not isinstance(msg, Message) or type(msg) not in MESSAGE_CLASSES.values():
        raise SchemaError(f"not a capc message: {type(msg).__name__}")
    w = _Writer()
    fields = msg._encode_fields(w)
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
    fields = _exact_fields(name, head["f"], cls._F)  # type: ignore[attr-defined]
    r = _Reader(name, blobs)
    try:
        msg = cls._decode_fields(fields, r)
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise SchemaError(f"{name}: invalid fields: {e}") from None
    r.finish()
    return msg
