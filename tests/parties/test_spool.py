"""The query spool (capc.parties.spool): one copy of a batch query per host, bound to its digest."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from capc.net.messages import ModelPlan, QueryRequest, SchemaError, decode_message, encode_message
from capc.parties import spool


def test_the_digest_is_sha256_over_the_length_and_the_chunk_digests():
    """An independent computation of the spool digest: the same for 1 or 2 threads, for an empty blob,
    for sizes around a chunk boundary, and different for blobs that differ anywhere or only in
    length (a trailing zero byte)."""
    c = spool.DIGEST_CHUNK
    rng = np.random.default_rng(1)
    for size in (0, 1, c - 1, c, c + 1, 3 * c + 5):
        blob = rng.bytes(size)
        chunks = [blob[i:i + c] for i in range(0, size, c)] or [b""]
        top = hashlib.sha256(b"capc-spool-digest-v1" + size.to_bytes(8, "little"))
        for ch in chunks:
            top.update(hashlib.sha256(ch).digest())
        assert spool.digest(blob) == spool.digest(blob, threads=1) == top.hexdigest()
        if size:
            flipped = bytearray(blob)
            flipped[size // 2] ^= 1
            assert spool.digest(bytes(flipped)) != top.hexdigest()
        assert spool.digest(blob + b"\0") != top.hexdigest()


def test_a_shared_directory_is_proved_by_the_token_not_by_the_path(tmp_path):
    d = tmp_path / "spool"
    token = spool.announce(d, "ap-1")
    assert spool.shares_spool(str(d), "ap-1", token)
    assert oct(d.stat().st_mode & 0o777) == oct(0o700)
    # another host's directory of the same name holds another token (or none)
    assert not spool.shares_spool(str(d), "ap-1", "0" * 32)
    assert not spool.shares_spool(str(d), "ap-2", token)
    assert not spool.shares_spool(str(tmp_path / "elsewhere"), "ap-1", token)
    assert not spool.shares_spool("relative/spool", "ap-1", token)


def test_a_spooled_query_is_written_once_read_back_and_removed(tmp_path):
    d = tmp_path / "spool"
    spool.announce(d, "ap-1")
    blob = os.urandom(1 << 16)
    qs = spool.QuerySpool()
    name = qs.put(d, blob)
    assert name == spool.digest(blob) and qs.put(d, blob) == name
    assert spool.read_spooled(d, name) == blob
    qs.clear()
    with pytest.raises(spool.SpoolError, match="not in"):
        spool.read_spooled(d, name)


def test_the_answering_party_refuses_a_substituted_or_foreign_file(tmp_path):
    """A local process that can write the spool directory swaps the QP's query for its own: the AP
    reads the name from the authenticated request and refuses content with another digest; names
    that are not digests (paths out of the directory) and symbolic links are refused too."""
    d = tmp_path / "spool"
    spool.announce(d, "ap-1")
    blob = os.urandom(4096)
    name = spool.QuerySpool().put(d, blob)
    (d / name).write_bytes(os.urandom(4096))
    with pytest.raises(spool.SpoolError, match="SHA-256"):
        spool.read_spooled(d, name)
    with pytest.raises(spool.SpoolError, match="hex digest"):
        spool.read_spooled(d, "../../etc/passwd")
    secret = tmp_path / "model.keras"
    secret.write_bytes(b"weights")
    link_name = hashlib.sha256(b"weights").hexdigest()
    (d / link_name).symlink_to(secret)
    with pytest.raises(spool.SpoolError, match="regular file"):
        spool.read_spooled(d, link_name)


def test_query_request_carries_either_ciphertexts_or_a_spooled_name():
    ids = np.array([1, 2], dtype=np.uint64)
    name = "ab" * 32
    req = QueryRequest(query_ids=ids, ciphertexts=(), num_classes=10, frac_bits=3, spool=name)
    assert decode_message(*encode_message(req)) == req
    with pytest.raises(SchemaError, match="either"):
        QueryRequest(query_ids=ids, ciphertexts=(), num_classes=10, frac_bits=3)
    with pytest.raises(SchemaError, match="either"):
        QueryRequest(query_ids=ids, ciphertexts=(b"x",), num_classes=10, frac_bits=3, spool=name)
    with pytest.raises(SchemaError, match="SHA-256"):
        QueryRequest(query_ids=ids, ciphertexts=(), num_classes=10, frac_bits=3, spool="../x")
    mp = ModelPlan(plan_bytes=b"p", spool_dir="/tmp/s", spool_token="0f" * 16)
    assert decode_message(*encode_message(mp)) == mp
