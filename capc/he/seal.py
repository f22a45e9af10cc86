"""Thin helpers over TenSEAL's low-level SEAL bindings (``tenseal.sealapi``) and capc's wire framing.

SEAL's Python bindings serialise only to file paths, so objects pass through a private temporary
directory (in RAM under ``/dev/shm`` when available).  Every blob capc sends is framed as::

    magic (8 bytes) | header length (u32 LE) | JSON header | sections: tag (1 byte) | length (u64 LE) | bytes

Tags: ``P`` encryption parameters, ``K`` public key, ``R`` relinearisation keys, ``G`` Galois keys, ``C`` ciphertext,
``X`` a plane of ciphertext residues (:mod:`capc.he.residue_wire`).
No function here can write a secret key: :func:`frame` accepts only those tags.
"""

from __future__ import annotations

import json
import itertools
import os
import shutil
import struct
import tempfile
import threading
from typing import Any

import tenseal.sealapi as seal

from capc.config import HEParams
from capc.he.errors import HEError

CONTEXT_MAGIC = b"CAPCHEc1"
QUERY_MAGIC = b"CAPCHEq1"
RESULT_MAGIC = b"CAPCHEr1"
_ALLOWED_TAGS = {b"P", b"K", b"R", b"G", b"C", b"X"}
_SEC = {128: seal.SEC_LEVEL_TYPE.TC128, 192: seal.SEC_LEVEL_TYPE.TC192, 256: seal.SEC_LEVEL_TYPE.TC256}


class _Scratch:
    """A private temporary directory for SEAL's path-based save/load (removed on ``close``).

    Safe to share between threads (the querying party decrypts several answering parties' results in
    parallel threads with one key set): every call uses its own file name.
    """

    def __init__(self) -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="capc-he-", dir=base)
        self._count = itertools.count()

    def _path(self) -> str:
        return os.path.join(self.dir, f"obj-{threading.get_ident()}-{next(self._count)}")

    def dump(self, obj: Any) -> bytes:
        path = self._path()
        obj.save(path)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            os.unlink(path)

    def load(self, obj: Any, data: bytes, *args: Any) -> Any:
        path = self._path()
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            obj.load(*args, path)
        finally:
            os.unlink(path)
        return obj

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __del__(self) -> None:
        self.close()


def make_parms(he: HEParams) -> seal.EncryptionParameters:
    """SEAL CKKS encryption parameters for ``he`` (primes chosen by SEAL's CoeffModulus.Create)."""
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(he.poly_modulus_degree)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(he.poly_modulus_degree, list(he.coeff_modulus)))
    return parms


def make_context(parms: seal.EncryptionParameters, security_level: int) -> seal.SEALContext:
    """A SEAL context enforcing the HE-standard security level; :class:`HEError` if SEAL refuses."""
    if parms.scheme() != seal.SCHEME_TYPE.CKKS:
        raise HEError(f"the context is not CKKS (scheme {parms.scheme()}); capc evaluates models "
                      "only under CKKS")
    if security_level not in _SEC:
        raise HEError(f"unsupported security level {security_level}")
    ctx = seal.SEALContext(parms, True, _SEC[security_level])
    if not ctx.parameters_set():
        raise HEError(f"SEAL rejected the parameters: {ctx.parameters_error_message()}")
    return ctx


def level_chain(ctx: seal.SEALContext) -> list[tuple[list[int], int]]:
    """(parms_id, last prime) per level from the top data level down to the lowest level."""
    out = []
    cd = ctx.first_context_data()
    while cd is not None:
        mods = cd.parms().coeff_modulus()
        out.append((cd.parms_id(), mods[-1].value()))
        cd = cd.next_context_data()
    return out


def frame(magic: bytes, header: dict[str, Any], sections: list[tuple[bytes, bytes]]) -> bytes:
    """Assemble a framed blob (see module docstring)."""
    head = json.dumps(header, sort_keys=True).encode()
    parts = [magic, struct.pack("<I", len(head)), head]
    for tag, data in sections:
        if tag not in _ALLOWED_TAGS:
            raise HEError(f"refusing to frame section {tag!r}")
        parts += [tag, struct.pack("<Q", memoryview(data).nbytes), data]
    return b"".join(parts)


def unframe(blob: Any, magic: bytes, what: str) -> tuple[dict[str, Any], list[tuple[bytes, memoryview]]]:
    """Split a framed blob into its header and (tag, zero-copy view) sections; :class:`HEError`
    naming ``what`` if it is malformed."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise HEError(f"{what} must be bytes, got {type(blob).__name__}")
    # sections are zero-copy views into the blob: a batch query is about a gigabyte
    data = memoryview(blob).cast("B")
    if bytes(data[:8]) != magic:
        raise HEError(f"{what}: not a capc {what} (bad magic {bytes(data[:8])!r})")
    try:
        (hlen,) = struct.unpack_from("<I", data, 8)
        header = json.loads(bytes(data[12:12 + hlen]))
        pos = 12 + hlen
        sections = []
        while pos < len(data):
            tag = bytes(data[pos:pos + 1])
            (n,) = struct.unpack_from("<Q", data, pos + 1)
            start = pos + 9
            if start + n > len(data):
                raise ValueError("section runs past the end")
            sections.append((tag, data[start:start + n]))
            pos = start + n
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise HEError(f"{what}: truncated or corrupt ({exc})") from None
    if not isinstance(header, dict):
        raise HEError(f"{what}: corrupt header")
    return header, sections


def galois_elements(steps: list[int], poly_modulus_degree: int) -> list[int]:
    """SEAL Galois elements for left rotations by ``steps`` slots: 3^step mod 2N."""
    return [pow(3, s, 2 * poly_modulus_degree) for s in steps]
