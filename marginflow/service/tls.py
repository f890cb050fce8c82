"""A self-signed TLS certificate so the service speaks HTTPS from its first start.

Why these choices:

* **ECDSA P-256**: supported by every TLS client, small and fast to sign with.
* **397 days**: the longest validity browsers accept for a server certificate (CA/Browser
  Forum); a certificate that lives longer is refused by Safari and Chrome.
* **SubjectAlternativeName** with ``DNS:localhost`` and ``IP:127.0.0.1``: clients match the
  host against the SAN only (the common name has been ignored for years), and an IP must be
  an IP entry, not a DNS one.
* The key is PEM without a password (the service starts unattended) and so is written with
  mode 0600; an existing pair is reused, never overwritten, so an operator's own
  certificate put in its place is what the service serves.
* :func:`certificate_fingerprint` prints as ``openssl x509 -fingerprint -sha256`` does, so
  an operator can compare it with what a browser shows before trusting it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from marginflow.core.errors import ConfigurationError
from marginflow.service._files import write_atomic, write_private

CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"
CERT_MODE = 0o644  # public: clients are handed it to trust
VALIDITY = dt.timedelta(days=397)
BACKDATE = dt.timedelta(minutes=5)  # a client whose clock is a little behind still accepts it

MSG_HALF_PAIR = "{present} exists without {missing}: restore it, or remove both to generate a pair"


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _certificate(key: ec.EllipticCurvePrivateKey, hostnames: Sequence[str]) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    start = dt.datetime.now(dt.UTC) - BACKDATE
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(host) for host in hostnames]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def self_signed_certificate(
    directory: Path, *, hostnames: Sequence[str] = ("localhost", "127.0.0.1")
) -> tuple[Path, Path]:
    """``(certificate, key)`` paths in ``directory``: the existing pair, or a new one.

    A new pair is an ECDSA P-256 key (mode 0600) and a self-signed certificate for
    ``hostnames`` (names and IP addresses), valid 397 days. ConfigurationError if only one
    of the two files exists.
    """
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    if cert_path.exists() or key_path.exists():
        present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise ConfigurationError(MSG_HALF_PAIR.format(present=present, missing=missing))
    if not hostnames:
        raise ConfigurationError("a certificate needs at least one hostname")
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(key, hostnames)
    # Key first: a crash between the two leaves a key without a certificate, which is
    # refused above, never a certificate whose key is lost.
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_atomic(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=CERT_MODE)
    return cert_path, key_path


def certificate_fingerprint(path: Path) -> str:
    """SHA-256 of the certificate's DER form, as upper-case hex pairs joined by colons."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as error:
        raise ConfigurationError(f"{path}: cannot be read: {error.strerror}") from None
    except ValueError:
        raise ConfigurationError(f"{path}: is not a PEM certificate") from None
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()
