"""Mutual-TLS contexts and peer identity checks.

Both sides use TLS 1.3 only, require a certificate from the peer (``CERT_REQUIRED``), and trust only
the run CA (no system roots). Host names are not checked by TLS; instead, after the handshake, the
party identity in the peer's certificate (CN = SAN URI ``capc://party/<name>``, see
:mod:`capc.net.certs`) is compared with the party expected (client side) or with the allowed list
(server side).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from capc.net.certs import (CA_CERT_FILE, check_validity, identity_from_certificate,
                            identity_from_fields, load_certificate)
from capc.net.errors import CertificateError, PeerAuthError
from capc.net.names import PARTY_URI_PREFIX


def _base_context(purpose: int, ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    if purpose == ssl.PROTOCOL_TLS_CLIENT:
        # Identity is the capc party name, checked after the handshake; hosts may be reached by
        # any address, so TLS host-name matching would add nothing but false refusals.
        ctx.check_hostname = False
    try:
        ctx.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise CertificateError(f"cannot load CA certificate {ca_file}: {e}") from None
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    try:
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except FileNotFoundError as e:
        raise CertificateError(f"certificate or key file missing: {e.filename}") from None
    except (OSError, ssl.SSLError) as e:
        raise CertificateError(f"cannot load certificate {cert_file} with key {key_file}: {e}") from None


def make_client_context(ca_file: str | os.PathLike[str], cert_file: str | os.PathLike[str] | None,
                        key_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """Return a TLS 1.3 client context trusting only ``ca_file``, presenting ``cert_file``.

    ``cert_file=None`` builds a context without a client certificate (servers will refuse it; useful
    only to test that they do).
    """
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, Path(ca_file))
    if cert_file is not None:
        if key_file is None:
            raise CertificateError("a client certificate needs its key file")
        _load_chain(ctx, Path(cert_file), Path(key_file))
    return ctx


def make_server_context(ca_file: str | os.PathLike[str], cert_file: str | os.PathLike[str],
                        key_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """Return a TLS 1.3 server context that requires a client certificate from the ``ca_file`` CA."""
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER, Path(ca_file))
    _load_chain(ctx, Path(cert_file), Path(key_file))
    return ctx


@dataclass(frozen=True)
class PartyTLS:
    """A party's TLS credentials: its name and ready client/server contexts for the run CA."""

    name: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_context: ssl.SSLContext
    server_context: ssl.SSLContext

    @classmethod
    def from_files(cls, ca_file: str | os.PathLike[str], cert_file: str | os.PathLike[str],
                   key_file: str | os.PathLike[str]) -> PartyTLS:
        """Load credentials, checking the certificate is current, issued by the CA and names a party."""
        ca_p, cert_p, key_p = Path(ca_file), Path(cert_file), Path(key_file)
        ca = load_certificate(ca_p)
        cert = load_certificate(cert_p)
        check_validity(ca, f"CA certificate {ca_p}")
        check_validity(cert, f"certificate {cert_p}")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as e:
            detail = str(e) or "signature does not verify"
            raise CertificateError(f"certificate {cert_p} was not issued by the CA in {ca_p}: "
                                   f"{detail}") from None
        try:
            name = identity_from_certificate(cert)
        except CertificateError as e:
            raise CertificateError(f"{cert_p}: {e}") from None
        return cls(name=name, ca_file=ca_p, cert_file=cert_p, key_file=key_p,
                   client_context=make_client_context(ca_p, cert_p, key_p),
                   server_context=make_server_context(ca_p, cert_p, key_p))

    @classmethod
    def load(cls, pki_dir: str | os.PathLike[str], name: str) -> PartyTLS:
        """Load ``ca.pem``, ``<name>.pem`` and ``<name>.key`` from a directory made by
        :func:`capc.net.certs.make_run_pki`, checking that the certificate really names ``name``."""
        d = Path(pki_dir)
        tls = cls.from_files(d / CA_CERT_FILE, d / f"{name}.pem", d / f"{name}.key")
        if tls.name != name:
            raise CertificateError(f"{d / (name + '.pem')} names party {tls.name!r}, not {name!r}")
        return tls


def peer_identity(sock: ssl.SSLSocket) -> str:
    """Return the party name in the certificate the peer presented on a handshaken TLS socket.

    Raises :class:`PeerAuthError` if there is no certificate or it carries no valid capc identity.
    """
    cert = sock.getpeercert()
    if not cert:
        raise PeerAuthError("peer presented no certificate")
    cns = [v for rdn in cert.get("subject", ()) for (k, v) in rdn if k == "commonName"]
    uris = [v for (k, v) in cert.get("subjectAltName", ())
            if k == "URI" and v.startswith(PARTY_URI_PREFIX)]
    try:
        return identity_from_fields(cns[0] if len(cns) == 1 else None, uris)
    except CertificateError as e:
        raise PeerAuthError(f"peer certificate has no valid capc identity: {e}") from None


def check_peer(sock: ssl.SSLSocket, allowed: str | Collection[str] | None, where: str) -> str:
    """Return the peer's party name if it is ``allowed`` (one name, a collection, or ``None`` = any
    party certified by the run CA); otherwise raise :class:`PeerAuthError` naming both."""
    name = peer_identity(sock)
    if allowed is None:
        return name
    ok = (name == allowed) if isinstance(allowed, str) else (name in allowed)
    if not ok:
        want = repr(allowed) if isinstance(allowed, str) else "one of " + ", ".join(sorted(allowed))
        raise PeerAuthError(f"{where}: peer certificate names {name!r}, expected {want}")
    return name


def describe_tls_error(exc: BaseException) -> str:
    """Turn an ``ssl`` exception into a short human-readable reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"peer certificate rejected ({exc.verify_message or exc.reason}); it was not "
                "issued by this run's CA or is not valid now")
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).lower().replace("_", " ")
        if "alert" in reason:
            return f"peer refused the handshake ({reason})"
        return reason
    return str(exc) or type(exc).__name__
