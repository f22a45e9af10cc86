"""Message schemas: encode/decode round trips (property tests) and strict validation."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capc.net.errors import ProtocolError
from capc.net.framing import MessageType
from capc.net.messages import (MESSAGE_CLASSES, BudgetReserved, ErrorReply, GcStart, Hello, HelloAck, ModelPlan,
                               NoisyArgmaxRequest, PublicContext, QueryRequest, QueryResult, SchemaError, Shutdown,
                               StepDone, VoteShare, decode_message, encode_message)

party_index = st.integers(0, 999)
qp_names = party_index.map(lambda i: f"qp-{i}")
any_party = st.one_of(qp_names, party_index.map(lambda i: f"ap-{i}"), st.just("pg"),
                      party_index.map(lambda i: f"pg-{i}"))
run_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
idents = st.from_regex(r"\A[a-z][a-z0-9_]{0,15}\Z")
query_ids = st.integers(0, 2**63 - 1)
classes = st.integers(2, 64)
blobs = st.binary(min_size=1, max_size=64)
ciphertexts = st.lists(blobs, min_size=1, max_size=5).map(tuple)
text = st.text(max_size=60)
scalars = st.one_of(st.booleans(), st.none(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
params = st.dictionaries(idents, st.one_of(scalars, st.lists(scalars, max_size=4).map(tuple)),
                         max_size=6)


id_lists = st.lists(query_ids, min_size=1, max_size=20, unique=True).map(lambda v: np.array(v, dtype=np.uint64))


@st.composite
def vote_shares(draw: st.DrawFn) -> VoteShare:
    c, ids = draw(classes), draw(id_lists)
    flat = draw(st.lists(st.integers(0, 2**64 - 1), min_size=c * len(ids), max_size=c * len(ids)))
    return VoteShare(qp_id=draw(qp_names), query_ids=ids, num_classes=c,
                     shares=np.array(flat, dtype=np.uint64).reshape(len(ids), c))


@st.composite
def noisy_argmax_requests(draw: st.DrawFn) -> NoisyArgmaxRequest:
    ids = draw(id_lists)
    counts = draw(st.lists(st.integers(1, 1000), min_size=len(ids), max_size=len(ids)))
    return NoisyArgmaxRequest(qp_id=draw(qp_names), query_ids=ids, n_answering=np.array(counts, dtype=np.uint64),
                              num_classes=draw(classes))


#: One strategy per message class; the test below checks every wire type is covered.
STRATEGIES = {
    Hello: any_party.flatmap(lambda p: st.builds(Hello, party=st.just(p), role=st.just(p.split("-")[0]),
                                                 run_id=run_ids,
                                                 protocol_version=st.integers(1, 65535))),
    HelloAck: st.builds(HelloAck, party=any_party, run_id=run_ids,
                        protocol_version=st.integers(1, 65535)),
    ModelPlan: st.builds(ModelPlan, plan_bytes=blobs),
    PublicContext: st.builds(PublicContext, context_bytes=blobs, params=params),
    QueryRequest: st.builds(QueryRequest, query_ids=id_lists, ciphertexts=ciphertexts,
                            num_classes=classes, frac_bits=st.integers(0, 62)),
    QueryResult: st.builds(QueryResult, query_ids=id_lists, ciphertexts=ciphertexts),
    GcStart: st.builds(GcStart, query_ids=id_lists, program=idents, num_classes=classes,
                       options=params),
    VoteShare: vote_shares(),
    NoisyArgmaxRequest: noisy_argmax_requests(),
    BudgetReserved: st.builds(lambda n, c, t: BudgetReserved(n, f"why: {t}" if c else "", c),
                              st.integers(0, 65536),
                              st.sampled_from(["", "refused", "budget_exhausted", "replayed"]), text),
    StepDone: st.builds(StepDone, query_id=query_ids, step=idents, ok=st.booleans(), detail=text),
    ErrorReply: st.builds(ErrorReply, code=idents, message=text),
    Shutdown: st.builds(Shutdown, reason=text),
}
messages = st.one_of(*STRATEGIES.values())


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg) -> None:
    mtype, payload = encode_message(msg)
    assert mtype == msg.TYPE
    back = decode_message(mtype, payload)
    assert type(back) is type(msg)
    assert back == msg


def test_every_type_has_a_class_and_a_strategy() -> None:
    assert set(MESSAGE_CLASSES) == set(MessageType)
    assert {c.TYPE for c in STRATEGIES} == set(MessageType)


def _payload(fields: dict, blobs: list[bytes] = (), lens: list[int] | None = None) -> bytes:
    head = json.dumps({"f": fields, "b": [len(b) for b in blobs] if lens is None else lens}).encode()
    return struct.pack(">I", len(head)) + head + b"".join(blobs)


def test_vote_share_checks_dtype_and_shape() -> None:
    one = [1]
    with pytest.raises(SchemaError, match="VoteShare.shares: must have dtype uint64, got int64"):
        VoteShare("qp-0", one, 3, np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(SchemaError, match=r"must have shape \(1, 4\) to match query_ids, num_classes"):
        VoteShare("qp-0", one, 4, np.zeros((1, 3), dtype=np.uint64))
    with pytest.raises(SchemaError, match="must name a qp party"):
        VoteShare("ap-1", one, 3, np.zeros((1, 3), dtype=np.uint64))
    ok = VoteShare("qp-0", one, 3, np.array([[1, 2, 3]], dtype=">u8"))
    assert ok.shares.dtype == np.uint64 and not ok.shares.flags.writeable
    # wire side: shares whose shape does not match (ids, classes), or of another dtype
    ids = {"dtype": "<u8", "shape": [1], "blob": 0}
    fields = {"qp_id": "qp-0", "query_ids": ids, "num_classes": 4,
              "shares": {"dtype": "<u8", "shape": [1, 3], "blob": 1}}
    with pytest.raises(SchemaError, match="shape"):
        decode_message(MessageType.VOTE_SHARE, _payload(fields, [b"\1" + b"\0" * 7, b"\0" * 24]))
    fields["shares"] = {"dtype": "<i8", "shape": [1, 4], "blob": 1}
    with pytest.raises(SchemaError, match="dtype"):
        decode_message(MessageType.VOTE_SHARE, _payload(fields, [b"\1" + b"\0" * 7, b"\0" * 32]))
    fields["shares"] = {"dtype": "<u8", "shape": [1, 4], "blob": 1}
    with pytest.raises(SchemaError, match="blob holds 24 bytes, expected 32"):
        decode_message(MessageType.VOTE_SHARE, _payload(fields, [b"\1" + b"\0" * 7, b"\0" * 24]))


@pytest.mark.parametrize("make, match", [
    (lambda: Hello("qp-0", "ap", "r1"), "does not match party name"),
    (lambda: Hello("bob", "qp", "r1"), "invalid party name"),
    (lambda: Hello("qp-0", "qp", "bad run id"), "run_id"),
    (lambda: Hello("qp-0", "qp", "run\n"), "run_id"),
    (lambda: ErrorReply("code\n", "m"), "code"),
    (lambda: QueryRequest(np.array([], dtype=np.uint64), (b"x",), 10, 8), "query_ids: must hold 1.."),
    (lambda: QueryRequest([3, 3], (b"x",), 10, 8), "repeats a query id"),
    (lambda: QueryRequest(np.array([[3, 4]], dtype=np.uint64), (b"x",), 10, 8), "must have shape"),
    (lambda: QueryRequest(np.array([2**63], dtype=np.uint64), (b"x",), 10, 8), r"query ids must be in 0..9223372036854775807"),
    (lambda: QueryRequest(np.array([1], dtype=np.int64), (b"x",), 10, 8), "must have dtype uint64"),
    (lambda: QueryRequest([1], (), 10, 8), "either ciphertexts or a spooled blob"),
    (lambda: QueryRequest([1], (b"x",), 10, 8, spool="a" * 64), "either ciphertexts or a spooled blob"),
    (lambda: QueryRequest([1], (b"",), 10, 8), r"ciphertexts\[0\]: must not be empty"),
    (lambda: QueryRequest([1], b"abc", 10, 8), "must be a tuple of byte strings"),
    (lambda: QueryRequest([1], (b"x",), 1, 8), "num_classes"),
    (lambda: QueryRequest([1], (b"x",), 10, 63), "frac_bits"),
    (lambda: QueryRequest([1], (b"x",), True, 8), "must be an integer, got bool"),
    (lambda: PublicContext(b"x", {"scale": float("nan")}), "must be finite"),
    (lambda: PublicContext(b"x", {"Bad Key": 1}), "lower-case identifier"),
    (lambda: GcStart([1], "Argmax!", 10), "program"),
    (lambda: NoisyArgmaxRequest("qp-0", [1], [0], 10), "n_answering"),
    (lambda: NoisyArgmaxRequest("qp-0", [1, 1], [2, 2], 10), "repeats a query id"),
    (lambda: NoisyArgmaxRequest("qp-0", [1, 2], [2, 0], 10), "n_answering"),
    (lambda: NoisyArgmaxRequest("qp-0", [1, 2], [2], 10), r"n_answering: must have shape \(2,\)"),
    (lambda: NoisyArgmaxRequest("ap-1", [1], [2], 10), "qp_id"),
    (lambda: BudgetReserved(-1), "reserved"),
    (lambda: BudgetReserved(0, "no budget", "out_of_luck"), "code 'out_of_luck' is not one of"),
    (lambda: BudgetReserved(0, "no budget"), "needs both a code and a reason"),
    (lambda: BudgetReserved(0, "", "replayed"), "needs both a code and a reason"),
    (lambda: ErrorReply("x", "m" * 5000), "longer than 4096"),
    (lambda: StepDone(1, "vote", ok="yes"), "must be a boolean"),
])
def test_construction_validation(make, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        make()


@pytest.mark.parametrize("payload, match", [
    (b"\x00\x00", "shorter than its header length"),
    (struct.pack(">I", 1000) + b"{}", "JSON header length 1000 is invalid"),
    (struct.pack(">I", 3) + b"\xff\xfe{", "JSON header is malformed"),
    (_payload({"reason": "x", "extra": 1}), "unknown field"),
    (_payload({}), "missing field"),
    (_payload({"reason": 5}), "Shutdown.reason: must be a string"),
    (_payload({"reason": "x"}, [b"ab"]), "blobs \\[0\\] are not referenced"),
    (_payload({"reason": "x"}, [], lens=[5]), "blob lengths add up to 5"),
    (struct.pack(">I", 27) + b'{"f":{"reason":"a"},"b":[-1]}'[:27], "malformed|blob lengths"),
])
def test_decode_rejects_malformed_payloads(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_message(MessageType.SHUTDOWN, payload)


def test_decode_rejects_duplicate_keys_nan_and_bad_blob_refs() -> None:
    head = b'{"f":{"reason":"a","reason":"b"},"b":[]}'
    with pytest.raises(SchemaError, match="duplicate JSON key"):
        decode_message(MessageType.SHUTDOWN, struct.pack(">I", len(head)) + head)
    head = b'{"f":{"context_bytes":{"blob":0},"params":{"s":NaN}},"b":[1]}'
    with pytest.raises(SchemaError, match="non-finite"):
        decode_message(MessageType.PUBLIC_CONTEXT, struct.pack(">I", len(head)) + head + b"x")
    ids = {"dtype": "<u8", "shape": [1], "blob": 0}
    one = b"\1" + b"\0" * 7
    fields = {"query_ids": ids, "ciphertexts": [{"blob": 1}, {"blob": 1}], "segment": 0}
    with pytest.raises(SchemaError, match="referenced twice"):
        decode_message(MessageType.QUERY_RESULT, _payload(fields, [one, b"x"]))
    fields = {"query_ids": ids, "ciphertexts": [{"blob": 3}], "segment": 0}
    with pytest.raises(SchemaError, match="out of range"):
        decode_message(MessageType.QUERY_RESULT, _payload(fields, [one, b"x"]))
    fields = {"query_ids": {"dtype": "<u8", "shape": [2], "blob": 0}, "ciphertexts": [{"blob": 1}], "segment": 0}
    with pytest.raises(SchemaError, match="blob holds 8 bytes, expected 16"):
        decode_message(MessageType.QUERY_RESULT, _payload(fields, [one, b"x"]))
    with pytest.raises(ProtocolError, match="unknown message type code 99"):
        decode_message(99, b"")
