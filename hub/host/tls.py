"""TLS for the TRE's public names: the site's certificate, or a local CA for demos and tests.

The proxy serves https for `<domain>` and every origin below it (`alice.<domain>`,
`egress--service.<domain>`), so the certificate must name both `<domain>` and `*.<domain>`. A site
installs its own (TRE_TLS_CERT, TRE_TLS_KEY); `make demo` and the tests make a local CA under
`keys/tls/` with `local_certificate`, whose `ca.crt` a browser or client is told to trust.

`LoopbackTransport` lets a client on this host reach those names through the proxy on the public
address without DNS (glibc does not resolve `*.localhost`; browsers do), with the right SNI and
certificate checks.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.kernel.settings import Settings

CA_NAME = "TRE local CA"
LEAF_DAYS = 397  # the longest validity browsers accept for a server certificate
CA_DAYS = 3650


class TLSError(RuntimeError):
    """The certificate cannot serve the TRE; the message says what to do."""


@dataclass(frozen=True)
class CertificateFacts:
    names: tuple[str, ...]
    not_after: dt.datetime
    issuer: str


def ca_path(settings: Settings) -> Path:
    """The local CA's certificate: what a demo browser or test client trusts."""
    return settings.keys_dir / "tls" / "ca.crt"


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _names(settings: Settings) -> list[str]:
    return [settings.domain, f"*.{settings.domain}"]


def create_ca(cert_file: Path, key_file: Path) -> None:
    """A new local CA: its certificate (public) and key (0600)."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_file, _key_pem(key), private=True)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), private=False)


def local_certificate(settings: Settings) -> Path:
    """Make (once) a local CA and a certificate for the TRE's names; returns the CA's path.

    Kept when present and still right for the settings' domain; remade otherwise.
    """
    ca_file, ca_key_file = ca_path(settings), settings.keys_dir / "tls" / "ca.key"
    if not check(settings) and ca_file.is_file():
        return ca_file
    if settings.tls_cert_override or settings.tls_key_override:
        raise TLSError(
            "TRE_TLS_CERT/TRE_TLS_KEY name the site's certificate: renew it there; a local CA is only "
            "for demo and test TREs without them"
        )
    now = dt.datetime.now(dt.UTC)
    if not (ca_file.is_file() and ca_key_file.is_file()):
        create_ca(ca_file, ca_key_file)
    ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in _names(settings)]
    if settings.public_ip not in ("0.0.0.0", "::"):  # noqa: S104 - a name to leave out, not a bind
        alt.append(x509.IPAddress(ipaddress.ip_address(settings.public_ip)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(settings.tls_key, _key_pem(key), private=True)
    _write(
        settings.tls_cert, cert.public_bytes(serialization.Encoding.PEM) + ca_file.read_bytes(), private=False
    )
    return ca_file


def facts(settings: Settings) -> CertificateFacts:
    cert = x509.load_pem_x509_certificate(settings.tls_cert.read_bytes())
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(alt.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateFacts(names, cert.not_valid_after_utc, cert.issuer.rfc4514_string())


def check(settings: Settings) -> list[str]:
    """What stops the certificate from serving the TRE's names (empty when it can)."""
    cert_file, key_file = settings.tls_cert, settings.tls_key
    if not cert_file.is_file() or not key_file.is_file():
        return [
            f"no TLS certificate and key at {cert_file} and {key_file}: install the site's certificate "
            f"for {settings.domain} and *.{settings.domain} (TRE_TLS_CERT, TRE_TLS_KEY), or run "
            "`tre tls local` for a demo or test TRE"
        ]
    problems = []
    try:
        found = facts(settings)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        return [f"{cert_file} or {key_file} cannot be read as PEM ({exc})"]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, public) != key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        problems.append(f"{key_file} is not the key of {cert_file}")
    missing = [n for n in _names(settings) if n not in found.names]
    if missing:
        problems.append(f"{cert_file} does not name {', '.join(missing)} (it names {', '.join(found.names)})")
    if found.not_after <= dt.datetime.now(dt.UTC) + dt.timedelta(days=7):
        problems.append(f"{cert_file} expires on {found.not_after:%Y-%m-%d}: renew it")
    return problems


class LoopbackTransport(httpx.HTTPTransport):
    """Sends requests for the TRE's names to the proxy on `address`, keeping Host, SNI and the
    certificate check on the name (cookies stay with the name too: the client sees the original
    request)."""

    def __init__(self, domain: str, address: str = "127.0.0.1", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.domain, self.address = domain, address

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == self.domain or host.endswith("." + self.domain):
            request = httpx.Request(
                request.method,
                request.url.copy_with(host=self.address),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
        return super().handle_request(request)


def client(settings: Settings, **kwargs: object) -> httpx.Client:
    """An httpx client for this TRE's public URLs from this host, trusting its local CA if it has one."""
    ca = ca_path(settings)
    verify = ssl.create_default_context(cafile=ca) if ca.is_file() else True
    address = "127.0.0.1" if settings.public_ip in ("", "0.0.0.0") else settings.public_ip  # noqa: S104
    transport = LoopbackTransport(settings.domain, address, verify=verify)
    return httpx.Client(transport=transport, **kwargs)  # type: ignore[arg-type]
