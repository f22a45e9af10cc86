"""Certificates: files, permissions, identities, validation, and the ``capc certs`` command."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
from cryptography import x509

from capc.errors import CapcError
from capc.net.certs import (build_certs_parser, cmd_certs, identity_from_certificate,
                            load_certificate, make_run_pki)
from capc.net.errors import CertificateError
from capc.net.names import PartyNameError, parse_party_name, role_of
from capc.net.tls import PartyTLS


def test_party_names() -> None:
    assert parse_party_name("qp-0") == ("qp", 0)
    assert parse_party_name("ap-12") == ("ap", 12)
    assert parse_party_name("pg") == ("pg", None)
    assert parse_party_name("pg-1") == ("pg", 1)
    assert role_of("ap-3") == "ap"
    for bad in ["ap", "qp-", "ap-01", "AP-1", "xx-1", "ap-1 ", "ap-1\n", "", "pg-x", 3]:
        with pytest.raises(PartyNameError):
            parse_party_name(bad)


def test_pki_files_modes_and_identities(tmp_path: Path) -> None:
    pki = make_run_pki(tmp_path / "p", ["qp-0", "ap-1", "pg"], days=2)
    assert set(pki["parties"]) == {"qp-0", "ap-1", "pg"}
    ca = load_certificate(pki["ca"])
    for name, files in pki["parties"].items():
        assert stat.S_IMODE(files["key"].stat().st_mode) == 0o600
        cert = load_certificate(files["cert"])
        assert identity_from_certificate(cert) == name
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"capc://party/{name}" in san.get_values_for_type(x509.UniformResourceIdentifier)
        assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(pki["ca_key"].stat().st_mode) == 0o600
    assert PartyTLS.load(tmp_path / "p", "ap-1").name == "ap-1"


def test_pki_refuses_bad_input_and_overwrite(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="invalid party name 'bob'"):
        make_run_pki(tmp_path, ["qp-0", "bob"])
    with pytest.raises(CertificateError, match="duplicate party names: ap-1"):
        make_run_pki(tmp_path, ["ap-1", "ap-1"])
    with pytest.raises(CertificateError, match="days"):
        make_run_pki(tmp_path, ["ap-1"], days=0)
    with pytest.raises(CertificateError, match="no party names"):
        make_run_pki(tmp_path, [])
    make_run_pki(tmp_path, ["ap-1"], write_ca_key=False)
    assert not (tmp_path / "ca.key").exists()
    with pytest.raises(CertificateError, match="refusing to overwrite"):
        make_run_pki(tmp_path, ["ap-1"])
    make_run_pki(tmp_path, ["ap-1"], overwrite=True)
    assert isinstance(CertificateError("x"), CapcError)


def test_load_detects_mismatched_files(tmp_path: Path, pki_dir: Path, other_pki_dir: Path) -> None:
    # a certificate from another CA next to this run's ca.pem
    with pytest.raises(CertificateError, match="not issued by the CA"):
        PartyTLS.from_files(pki_dir / "ca.pem", other_pki_dir / "ap-1.pem", other_pki_dir / "ap-1.key")
    # the right CA but a key that belongs to another certificate
    with pytest.raises(CertificateError, match="cannot load certificate"):
        PartyTLS.from_files(pki_dir / "ca.pem", pki_dir / "ap-1.pem", pki_dir / "ap-2.key")
    # a file renamed to another party's name
    (tmp_path / "ca.pem").write_bytes((pki_dir / "ca.pem").read_bytes())
    (tmp_path / "ap-2.pem").write_bytes((pki_dir / "ap-1.pem").read_bytes())
    (tmp_path / "ap-2.key").write_bytes((pki_dir / "ap-1.key").read_bytes())
    with pytest.raises(CertificateError, match="names party 'ap-1', not 'ap-2'"):
        PartyTLS.load(tmp_path, "ap-2")
    with pytest.raises(CertificateError, match="does not exist"):
        PartyTLS.load(tmp_path, "pg")


def test_cmd_certs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_certs_parser(argparse.ArgumentParser(prog="capc certs"))
    args = parser.parse_args(["--out", str(tmp_path / "c"), "--parties", "qp-0", "ap-1", "ap-2",
                              "ap-3", "pg", "--days", "3"])
    assert cmd_certs(args) == 0
    out = capsys.readouterr().out
    assert "ap-3:" in out and "CA certificate" in out
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        ["ca.pem", "ca.key"] + [f"{n}.{e}" for n in ["qp-0", "ap-1", "ap-2", "ap-3", "pg"]
                                for e in ("pem", "key")])
