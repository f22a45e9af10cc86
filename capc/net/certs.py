"""A per-run certificate authority and the parties' certificates.

Every run gets its own CA (ECDSA P-256, self-signed). Each party gets an ECDSA P-256 key and a
certificate signed by that CA whose identity is carried twice, and both must agree:

* subject common name = the party name (``qp-0``, ``ap-1``, ``pg``; see :mod:`capc.net.names`);
* subject alternative name URI ``capc://party/<name>``.

The SAN also lists the host names / IP addresses given (default ``127.0.0.1`` and ``localhost``) so
that standard TLS tools can check them; capc itself authenticates peers by the party identity (see
:mod:`capc.net.tls`). Ed25519 keys also work with this machine's OpenSSL 3 and TLS 1.3, but P-256 is
accepted by every TLS stack, so it is the one used.

Files written to the output directory: ``ca.pem`` (CA certificate), ``ca.key`` (CA key, optional;
keep it off party hosts), ``<name>.pem`` and ``<name>.key`` per party. Key files are created with mode
0600 and never exist with wider permissions.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import ipaddress
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from capc.net.errors import CertificateError
from capc.net.names import PARTY_URI_PREFIX, PartyNameError, parse_party_name, party_uri

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
MAX_DAYS = 3650


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (no window with wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _host_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        if not isinstance(h, str) or not h or any(c.isspace() for c in h):
            raise CertificateError(f"invalid host name {h!r} for the certificate SAN")
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _validate_names(party_names: Sequence[str]) -> list[str]:
    names = list(party_names)
    if not names:
        raise CertificateError("no party names given: need at least one of qp-<i>, ap-<i>, pg")
    for n in names:
        try:
            parse_party_name(n)
        except PartyNameError as e:
            raise CertificateError(str(e)) from None
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CertificateError(f"duplicate party names: {', '.join(dup)}")
    return names


def make_run_pki(out_dir: str | os.PathLike[str], party_names: Sequence[str],
                 hosts: Sequence[str] = ("127.0.0.1", "localhost"), days: int = 30, *,
                 write_ca_key: bool = True, overwrite: bool = False,
                 run_label: str | None = None) -> dict:
    """Create a run CA and one certificate + key per party in ``out_dir``.

    Args:
        out_dir: directory to write into (created if missing, mode 0700).
        party_names: party names such as ``["qp-0", "ap-1", "ap-2", "pg"]``.
        hosts: host names / IP addresses listed in every party certificate's SAN.
        days: validity period of all certificates, 1..3650.
        write_ca_key: also write ``ca.key`` (needed only to issue more certificates later).
        overwrite: replace existing files; otherwise existing files are an error.
        run_label: text put in the CA's common name (default: a random run tag).

    Returns:
        ``{"dir": Path, "ca": Path, "ca_key": Path | None,
        "parties": {name: {"cert": Path, "key": Path}}}``.
    """
    names = _validate_names(party_names)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"days must be an integer in 1..{MAX_DAYS}, got {days!r}")
    san_hosts = _host_names(hosts)
    out = Path(out_dir)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)

    targets = [out / CA_CERT_FILE] + ([out / CA_KEY_FILE] if write_ca_key else [])
    for n in names:
        targets += [out / f"{n}.pem", out / f"{n}.key"]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise CertificateError(f"{out} already holds {', '.join(existing)}; refusing to overwrite "
                               "(use overwrite=True / --force)")
    for p in targets:
        if p.exists():
            p.unlink()

    now = _dt.datetime.now(_dt.timezone.utc)
    # Back-date slightly so that parties whose clocks lag a little still accept the certificates.
    not_before = now - _dt.timedelta(minutes=5)
    not_after = now + _dt.timedelta(days=days)

    ca_key = _new_key()
    label = run_label if run_label is not None else secrets.token_hex(4)
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "capc"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"capc run CA {label}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = out / CA_CERT_FILE
    _write_public(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_key_path: Path | None = None
    if write_ca_key:
        ca_key_path = out / CA_KEY_FILE
        _write_private(ca_key_path, _key_pem(ca_key))

    parties: dict[str, dict[str, Path]] = {}
    for n in names:
        key = _new_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "capc"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, n)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(party_uri(n))] + san_hosts), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = out / f"{n}.pem", out / f"{n}.key"
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _key_pem(key))
        parties[n] = {"cert": cert_path, "key": key_path}
    return {"dir": out, "ca": ca_path, "ca_key": ca_key_path, "parties": parties}


def identity_from_certificate(cert: x509.Certificate) -> str:
    """Return the party name a certificate carries, checking that its CN and SAN URI agree.

    Raises :class:`CertificateError` if the certificate has no capc identity, several, or a CN that
    differs from the SAN URI.
    """
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith(PARTY_URI_PREFIX)]
    except x509.ExtensionNotFound:
        uris = []
    cn = cns[0].value if len(cns) == 1 else None
    return identity_from_fields(cn if isinstance(cn, str) else None, uris)


def identity_from_fields(common_name: str | None, party_uris: Sequence[str]) -> str:
    """Combine a certificate's subject CN and its ``capc://party/`` SAN URIs into a party name."""
    if len(party_uris) != 1:
        raise CertificateError(f"certificate must carry exactly one {PARTY_URI_PREFIX}<name> SAN URI,"
                               f" found {len(party_uris)}")
    name = party_uris[0][len(PARTY_URI_PREFIX):]
    try:
        parse_party_name(name)
    except PartyNameError as e:
        raise CertificateError(f"certificate SAN URI {party_uris[0]!r}: {e}") from None
    if common_name != name:
        raise CertificateError(f"certificate common name {common_name!r} does not match its SAN "
                               f"identity {name!r}")
    return name


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """Read a PEM certificate, raising :class:`CertificateError` naming the file on failure."""
    p = Path(path)
    try:
        return x509.load_pem_x509_certificate(p.read_bytes())
    except FileNotFoundError:
        raise CertificateError(f"certificate file {p} does not exist") from None
    except (OSError, ValueError) as e:
        raise CertificateError(f"cannot read certificate {p}: {e}") from None


def check_validity(cert: x509.Certificate, what: str) -> None:
    """Raise :class:`CertificateError` if ``cert`` is not valid at the current time."""
    now = _dt.datetime.now(_dt.timezone.utc)
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"{what} expired on {cert.not_valid_after_utc.isoformat()}")


def build_certs_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``capc certs`` options to ``parser`` and return it."""
    parser.add_argument("--out", required=True, help="directory to write ca.pem and <name>.pem/.key")
    parser.add_argument("--parties", nargs="+", required=True, metavar="NAME",
                        help="party names, e.g. qp-0 ap-1 ap-2 ap-3 pg")
    parser.add_argument("--hosts", nargs="+", default=["127.0.0.1", "localhost"], metavar="HOST",
                        help="host names / IPs listed in each certificate (default: %(default)s)")
    parser.add_argument("--days", type=int, default=30, help="validity in days (default: 30)")
    parser.add_argument("--no-ca-key", action="store_true",
                        help="do not keep the CA private key (no more certificates can be issued)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def cmd_certs(args: argparse.Namespace) -> int:
    """Run ``capc certs``: create the run PKI and print what was written. Returns the exit code."""
    pki = make_run_pki(args.out, args.parties, hosts=args.hosts, days=args.days,
                       write_ca_key=not args.no_ca_key, overwrite=args.force)
    print(f"CA certificate: {pki['ca']}")
    if pki["ca_key"] is not None:
        print(f"CA key (keep it off party hosts): {pki['ca_key']}")
    for name, files in pki["parties"].items():
        print(f"{name}: {files['cert']} {files['key']}")
    return 0
