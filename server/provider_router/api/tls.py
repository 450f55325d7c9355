"""TLS server credentials that pick up renewed certificate files without a restart.

gRPC's documented way is `dynamic_ssl_server_credentials`: the core calls a fetcher before
every new connection's handshake, and a configuration it returns replaces the current one.
The fetcher runs on a gRPC core thread while holding the GIL, once per connection, so it
does no I/O at all: it hands over what a watcher task prepared. The watcher looks at the
files' stat stamps every `interval` seconds, in a worker thread (never blocking the event
loop), and reads and checks them only when a stamp moved. A rotation caught half-way (the
certificate renewed, the key not yet) fails the check and is retried at the next look;
the server keeps its current certificate meanwhile. Connections already open keep the
certificate they were made with, as TLS does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import cast

import grpc

from provider_router.errors import ConfigError
from provider_router.server_tls import TlsFiles, TlsMaterial, read_tls_material

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL_S = 10.0
"""How often the files' stamps are looked at ([server] tls_reload_interval)."""

Stamp = tuple[tuple[int, int, int], ...]


def _stamp(files: TlsFiles) -> Stamp:
    # stat follows symlinks: Kubernetes swaps a secret volume's ..data link, which changes
    # the inode and mtime seen through it.
    stamps = []
    for path in files.paths():
        info = os.stat(path)
        stamps.append((info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(stamps)


def _configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.cert_chain)], root_certificates=material.client_ca)


class CertificateReloader:
    """Owns the server's TLS credentials and keeps them in step with the files."""

    def __init__(self, files: TlsFiles, material: TlsMaterial, stamp: Stamp,
                 interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
                 observe: Callable[[str], None] | None = None) -> None:
        self.files = files
        # Told "loaded" or "rejected" once per change of the files (for metrics).
        self._observe = observe
        self._interval_s = interval_s
        self._stamp = stamp
        # Set by the watcher, taken by the next handshake; a plain attribute swap is atomic.
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        # The stubs say the fetcher returns a configuration; gRPC documents None as "no
        # change", which is what it returns on all but the first handshake after a reload.
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetch)
        self.credentials = grpc.dynamic_ssl_server_credentials(
            _configuration(material), fetch, require_client_authentication=files.mutual)

    @classmethod
    async def open(cls, files: TlsFiles, interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
                   observe: Callable[[str], None] | None = None) -> CertificateReloader:
        """Read the files (in a thread) and build the credentials."""
        material, stamp = await asyncio.to_thread(cls._read, files)
        return cls(files, material, stamp, interval_s, observe)

    @staticmethod
    def _read(files: TlsFiles) -> tuple[TlsMaterial, Stamp]:
        stamp = _stamp(files)
        return read_tls_material(files), stamp

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-connection callback: a new configuration once, else None (no change)."""
        pending, self._pending = self._pending, None
        return pending

    def start(self) -> None:
        """Start watching the files (no-op when the interval is 0)."""
        if self._interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check()

    async def check(self) -> bool:
        """Look at the files once; True when a new certificate was prepared."""
        try:
            stamp = await asyncio.to_thread(_stamp, self.files)
            if stamp == self._stamp:
                return False
            material, _ = await asyncio.to_thread(self._read, self.files)
        except (OSError, ConfigError) as exc:
            # Mid-rotation or a broken renewal: keep serving the current certificate, and
            # look again once the files change again (one warning per change, not per look).
            log.warning("TLS files not reloaded, keeping the current certificate: %s", exc)
            with contextlib.suppress(OSError):
                self._stamp = await asyncio.to_thread(_stamp, self.files)
            self._tell("rejected")
            return False
        self._pending = _configuration(material)
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate files changed: new connections use the new certificate")
        self._tell("loaded")
        return True

    def _tell(self, result: str) -> None:
        if self._observe is not None:
            self._observe(result)
