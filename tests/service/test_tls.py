"""The self-signed certificate: ECDSA P-256, 397 days, SANs for localhost and 127.0.0.1, a
private key file, reuse of an existing pair, and a TLS handshake that verifies against it."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from marginflow.core.errors import ConfigurationError
from marginflow.service.tls import certificate_fingerprint, self_signed_certificate


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def _load(cert_path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_path.read_bytes())


def test_the_pair_is_named_and_the_key_is_private(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    assert (cert_path.name, key_path.name) == ("tls.crt", "tls.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in cert_path.parent.iterdir()) == ["tls.crt", "tls.key"]


def test_the_certificate_is_self_signed_p256_for_397_days(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    certificate = _load(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert certificate.public_key() == key.public_key()
    certificate.verify_directly_issued_by(certificate)
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert validity == dt.timedelta(days=397)
    assert certificate.not_valid_before_utc <= dt.datetime.now(dt.UTC)


def test_the_certificate_names_localhost_and_the_loopback_ip(pair: tuple[Path, Path]) -> None:
    names = _load(pair[0]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_an_existing_pair_is_reused(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    before = cert_path.read_bytes(), key_path.read_bytes()
    assert self_signed_certificate(cert_path.parent) == pair
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_other_hostnames(tmp_path: Path) -> None:
    cert_path, _ = self_signed_certificate(tmp_path, hostnames=("margin.local", "::1", "10.1.2.3"))
    names = _load(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["margin.local"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    ]


@pytest.mark.parametrize("present", ["tls.crt", "tls.key"])
def test_half_a_pair_is_refused_naming_both_files(tmp_path: Path, present: str) -> None:
    (tmp_path / present).write_text("x")
    missing = {"tls.crt": "tls.key", "tls.key": "tls.crt"}[present]
    with pytest.raises(ConfigurationError, match=f"{present} exists without .*{missing}"):
        self_signed_certificate(tmp_path)


def test_the_fingerprint_is_sha256_of_the_der_in_colon_hex(pair: tuple[Path, Path]) -> None:
    fingerprint = certificate_fingerprint(pair[0])
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint)
    der = _load(pair[0]).public_bytes(serialization.Encoding.DER)
    assert fingerprint.replace(":", "").lower() == hashlib.sha256(der).hexdigest()


def test_a_fingerprint_of_no_certificate_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("junk")
    with pytest.raises(
        ConfigurationError, match=f"^{re.escape(str(junk))}: is not a PEM certificate$"
    ):
        certificate_fingerprint(junk)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        certificate_fingerprint(tmp_path / "absent.crt")


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    # In memory, no socket: the two ends pass bytes until both finish the handshake.
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=hostname)
    server_end = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client_end), ("server", server_end)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(to_server.read())
        to_client.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_a_client_trusting_the_certificate_verifies_the_server(
    pair: tuple[Path, Path], hostname: str
) -> None:
    cert_path, key_path = pair
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    _handshake(server, client, hostname)


def test_a_client_refuses_another_hostname(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "example.com")
