"""The server's TLS files ([server] tls_cert_file, tls_key_file, tls_client_ca_file):
parsed, checked and read.

The checks run at start (so `serve --check` catches a wrong path or a key that belongs to
another certificate) and again before every reload (so a half-written rotation is skipped
rather than served). They use the standard library's OpenSSL, the same library gRPC's
BoringSSL is compatible with for PEM files.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from provider_router.config_values import Table, text
from provider_router.errors import ConfigError

CERT_KEY = "server.tls_cert_file"
KEY_KEY = "server.tls_key_file"
CLIENT_CA_KEY = "server.tls_client_ca_file"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the server's certificate chain, its key and (for mTLS) the client CAs live."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by client_ca."""
        return self.client_ca is not None

    def paths(self) -> tuple[Path, ...]:
        """Every file, in a fixed order (the reloader watches these)."""
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes of one consistent set of TLS files."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None


def parse_tls_files(t: Table) -> TlsFiles | None:
    """The [server] TLS keys: both cert and key or neither; a client CA only with them."""
    cert = _path(text(t, "tls_cert_file", ""))
    key = _path(text(t, "tls_key_file", ""))
    client_ca = _path(text(t, "tls_client_ca_file", ""))
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError(CLIENT_CA_KEY, str(client_ca), "only with tls_cert_file and "
                              "tls_key_file (mTLS needs the server's own certificate)")
        return None
    if cert is None:
        raise ConfigError(CERT_KEY, None, "a certificate chain file, since tls_key_file is "
                          "set (both or neither)")
    if key is None:
        raise ConfigError(KEY_KEY, None, "a private key file, since tls_cert_file is set "
                          "(both or neither)")
    files = TlsFiles(cert, key, client_ca)
    check_tls_files(files)
    return files


def _path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


def check_tls_files(files: TlsFiles) -> None:
    """ConfigError naming the key whose file is missing, unreadable or not what it must be."""
    for key, path in ((CERT_KEY, files.cert), (KEY_KEY, files.key),
                      (CLIENT_CA_KEY, files.client_ca)):
        if path is not None and not os.access(path, os.R_OK):
            why = "no such file" if not path.exists() else "not readable by this process"
            raise ConfigError(key, str(path), f"a readable PEM file ({why})")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=files.cert)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(CERT_KEY, str(files.cert),
                          f"a PEM certificate chain ({_reason(exc)})") from None
    def refuse_passphrase() -> bytes:
        # Without this OpenSSL would prompt on the terminal (a server hung at start); gRPC
        # cannot use an encrypted key anyway.
        raise ConfigError(KEY_KEY, str(files.key), "an unencrypted PEM private key (gRPC "
                          "cannot use one protected by a passphrase)")

    try:
        context.load_cert_chain(files.cert, files.key, password=refuse_passphrase)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(KEY_KEY, str(files.key),
                          f"the PEM private key of {CERT_KEY} ({_reason(exc)})") from None
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(CLIENT_CA_KEY, str(files.client_ca),
                              f"PEM CA certificates ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def read_tls_material(files: TlsFiles) -> TlsMaterial:
    """Read and check the files (blocking: call it off the event loop).

    The files are read, checked by path, and read again: a rotation caught half-way (the
    certificate renewed, its key not yet) fails the check or the comparison, and raises
    ConfigError instead of yielding a certificate with the wrong key.
    """
    first = _read(files)
    check_tls_files(files)
    if _read(files) != first:
        raise ConfigError(CERT_KEY, str(files.cert), "files that stay put while being read "
                          "(they changed during the reload)")
    return first


def _read(files: TlsFiles) -> TlsMaterial:
    return TlsMaterial(files.cert.read_bytes(), files.key.read_bytes(),
                       files.client_ca.read_bytes() if files.client_ca else None)
