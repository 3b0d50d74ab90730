"""The gateway's OPC UA application certificate and which server certificates it trusts.

Layout under ``{data_dir}/opcua/pki`` (the usual OPC UA PKI folders)::

    own/cert.der, own/key.pem   the client certificate, self-signed on first use (1 year)
    trusted/                    server certificates (DER or PEM) the gateway accepts
    rejected/                   certificates servers offered that were not trusted

A server certificate is trusted when the very same certificate is in the trust directory.
With ``trust_on_first_use`` an unknown one is stored there, logged, and accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
from pathlib import Path

from asyncua.client.client import Client
from asyncua.crypto import uacrypto
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from connectors.opcua.config import SecurityConfig
from gateway.errors import ConnectorError

__all__ = ["APPLICATION_NAME", "ClientPki", "application_uri"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "edge-gateway"
_CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")
_UNSAFE = re.compile(r"[^\w.\- ]+")


def application_uri() -> str:
    """The client's ApplicationUri: it must also be in its certificate (generated to match)."""
    return f"urn:{socket.gethostname()}:{APPLICATION_NAME}"


class ClientPki:
    """One per gateway: every OPC UA device shares the application certificate."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock: asyncio.Lock | None = None

    @property
    def own_certificate(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "key.pem"

    def trust_dir(self, security: SecurityConfig) -> Path:
        return security.trust_dir or self.root / "trusted"

    async def client_certificate(
        self, client: Client, security: SecurityConfig
    ) -> tuple[Path, Path]:
        """The certificate and key to use, generated on first use when none is configured.

        Sets the client's ApplicationUri to the one in the certificate, as servers check it.
        """
        if security.certificate is not None and security.private_key is not None:
            try:
                cert = await uacrypto.load_certificate(security.certificate)
            except (OSError, ValueError) as exc:
                raise ConnectorError(f"cannot load security.certificate: {exc}") from exc
            uris = _certificate_uris(cert)
            if uris:
                client.application_uri = uris[0]
            return security.certificate, security.private_key
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # devices starting together must not generate two key pairs
            created = not self.own_key.exists()
            await client.setup_self_signed_certificate(
                self.own_key,
                self.own_certificate,
                subject_attrs={"commonName": APPLICATION_NAME},
            )
            self.own_key.chmod(0o600)
            if created:
                log.warning(
                    "generated the OPC UA client certificate %s (self-signed, %s); servers"
                    " must trust it", self.own_certificate, client.application_uri,
                )  # fmt: skip
        return self.own_certificate, self.own_key

    def check_server_certificate(self, der: bytes, security: SecurityConfig, device: str) -> None:
        """Accept the server certificate or raise ConnectorError saying how to trust it."""
        if not der:
            raise ConnectorError("the server offers no certificate for a secure endpoint")
        try:
            cert = _first_certificate(der)
        except ValueError as exc:
            raise ConnectorError(f"the server's certificate is not valid: {exc}") from exc
        raw = cert.public_bytes(Encoding.DER)
        trust_dir = self.trust_dir(security)
        if any(raw == known for known in _certificates_in(trust_dir)):
            return
        name = _file_name(cert, raw)
        fingerprint = hashlib.sha256(raw).hexdigest()
        subject = cert.subject.rfc4514_string()
        if security.trust_on_first_use:
            trust_dir.mkdir(parents=True, exist_ok=True)
            (trust_dir / name).write_bytes(raw)
            log.warning(
                "%s: trusting on first use the server certificate %s (sha256 %s), stored as %s",
                device, subject, fingerprint, trust_dir / name,
            )  # fmt: skip
            return
        rejected = self.root / "rejected"
        rejected.mkdir(parents=True, exist_ok=True)
        (rejected / name).write_bytes(raw)
        raise ConnectorError(
            f"server certificate {subject} (sha256 {fingerprint}) is not trusted: move"
            f" {rejected / name} into {trust_dir} to trust it, or set"
            " security.trust_on_first_use"
        )


def _first_certificate(der: bytes) -> x509.Certificate:
    """The first certificate of a DER chain (servers may send their CA's after their own)."""
    if len(der) > 4 and der[1] == 0x82:  # a SEQUENCE with a two-byte length
        der = der[: int.from_bytes(der[2:4], "big") + 4]
    return x509.load_der_x509_certificate(der)


def _certificate_uris(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(names.value.get_values_for_type(x509.UniformResourceIdentifier))


def _certificates_in(directory: Path) -> list[bytes]:
    """DER bytes of every certificate file in ``directory`` (unreadable files are skipped)."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in _CERT_SUFFIXES:
            continue
        try:
            data = path.read_bytes()
            cert = (
                x509.load_pem_x509_certificate(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(data)
            )
        except (OSError, ValueError):
            log.warning("%s: not a certificate, ignored", path)
            continue
        found.append(cert.public_bytes(Encoding.DER))
    return found


def _file_name(cert: x509.Certificate, raw: bytes) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common = str(names[0].value) if names else "server"
    return f"{_UNSAFE.sub('_', common)[:64]} [{hashlib.sha1(raw).hexdigest()}].der"
