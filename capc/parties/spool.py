"""A batch query travels once per host: the QP writes it to a spool directory its APs can read.

A batch query is hundreds of MB (one CKKS ciphertext per input feature).  Sent inline it crosses
TLS once per AP, although APs on the QP's host could read one copy.  So an AP announces, with its
public model plan, a spool directory and a random token it wrote there (``<party>.token``); the QP
spools for that AP only when it reads the same token back from that path, which proves a shared file
system (a same-named directory on another host holds no such token).  A spooled request then names
the file by its digest (:func:`digest`, SHA-256 over the SHA-256 of each 8 MiB chunk, so that both
sides hash a 778 MB query on two cores), sent inside the authenticated channel, and the AP refuses a
file whose digest differs: whoever else can write the directory can delete a query but not
substitute one.
The ciphertexts are encrypted under the QP's key, so a reader of the directory learns what a reader
of the wire would.  The QP removes its files once every AP has answered.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from capc.errors import CapcError

#: Blobs below this size go inline (the spool saves copies, not round trips).
SPOOL_MIN_BYTES = 16 << 20

_NAME = re.compile(r"^[0-9a-f]{64}$")


class SpoolError(CapcError):
    """A spooled query could not be written, found or verified."""


#: Bytes per chunk of the spool digest.
DIGEST_CHUNK = 8 << 20

_DIGEST_TAG = b"capc-spool-digest-v1"


def digest(data: bytes | memoryview, threads: int = 2) -> str:
    """The name of a spooled blob: SHA-256 over a tag, the blob's length and the SHA-256 of each
    :data:`DIGEST_CHUNK`-byte chunk in order.  A collision in it gives a collision in SHA-256 (the
    length fixes the chunking), and the chunks hash on ``threads`` threads (hashlib releases the GIL
    on large buffers): a batch query is hundreds of MB and both parties hash it on the critical path."""
    view = memoryview(data).cast("B")
    chunks = [view[i:i + DIGEST_CHUNK] for i in range(0, len(view), DIGEST_CHUNK)] or [view]

    def one(chunk: memoryview) -> bytes:
        return hashlib.sha256(chunk).digest()

    if threads > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(min(threads, len(chunks))) as ex:
            parts = list(ex.map(one, chunks))
    else:
        parts = [one(c) for c in chunks]
    top = hashlib.sha256(_DIGEST_TAG + len(view).to_bytes(8, "little"))
    for part in parts:
        top.update(part)
    return top.hexdigest()


def announce(directory: Path, party: str) -> str:
    """Create ``directory`` (private to this user) and write this party's token file; returns the
    token for its :class:`~capc.net.messages.ModelPlan`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    tmp = directory / f".{party}.token.{os.getpid()}"
    tmp.write_text(token)
    os.replace(tmp, directory / f"{party}.token")
    return token


def shares_spool(directory: str, party: str, token: str) -> bool:
    """True if ``directory`` on this host holds ``party``'s ``token`` (a shared file system)."""
    if not directory or not token or not Path(directory).is_absolute():
        return False
    try:
        return (Path(directory) / f"{party}.token").read_text() == token
    except (OSError, UnicodeDecodeError):
        return False


class QuerySpool:
    """The QP's side: blobs written once (by content) and removed after use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[int, str], tuple[bytes, Path]] = {}

    def put(self, directory: Path, blob: bytes) -> str:
        """Write ``blob`` to ``directory`` (once per blob and directory); returns its name."""
        with self._lock:
            key = (id(blob), str(directory))
            if key in self._files and self._files[key][0] is blob:
                return self._files[key][1].name
            name = digest(blob)
            path = directory / name
            tmp = directory / f".{name}.{os.getpid()}.{threading.get_ident()}"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(blob)
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise SpoolError(f"could not spool a {len(blob) / 1e6:.0f} MB query to {directory}: {exc}") from None
            self._files[key] = (blob, path)
            return name

    def clear(self) -> None:
        """Remove every file this spool wrote."""
        with self._lock:
            for _, path in self._files.values():
                path.unlink(missing_ok=True)
            self._files.clear()


def read_spooled(directory: Path, name: str) -> bytes:
    """The AP's side: the blob named ``name`` in ``directory``, checked against its digest."""
    if not _NAME.fullmatch(name):
        raise SpoolError(f"a spooled query's name must be a SHA-256 hex digest (see digest()), got {name!r}")
    path = directory / name
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise SpoolError(f"spooled query {name[:12]}.. is not a regular file")
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SpoolError(f"spooled query {name[:12]}.. is not in {directory} (removed, or the querying "
                         "party spooled to another host's directory)") from None
    except OSError as exc:
        raise SpoolError(f"spooled query {name[:12]}.. could not be read: {exc}") from None
    if digest(data) != name:
        raise SpoolError(f"spooled query {name[:12]}.. does not match its SHA-256 digest: the file was altered")
    return data


__all__ = ["SPOOL_MIN_BYTES", "DIGEST_CHUNK", "SpoolError", "announce", "digest", "shares_spool", "QuerySpool",
           "read_spooled"]
