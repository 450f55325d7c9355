"""Where the gRPC servers listen: the main port (plaintext, TLS or mTLS) and an optional
plaintext port that serves nothing but grpc.health.v1.

The health-only port exists because Kubernetes' native gRPC probes cannot speak TLS: with
TLS on the main port, a probe needs either `grpc_health_probe -tls ...` in the image or a
port without TLS. That port answers Check and Watch only (no RouterService, no reflection),
so what it exposes is exactly what a probe learns; bind it to the pod IP or localhost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from provider_router.api.tls import CertificateReloader
from provider_router.errors import ConfigError
from provider_router.server_tls import TlsFiles

ServerOptions = Sequence[tuple[str, int]]


async def bind(server: grpc.aio.Server, address: str, key: str, tls: TlsFiles | None,
               reload_interval_s: float, observe: Callable[[str], None] | None = None
               ) -> tuple[int, CertificateReloader | None]:
    """Bind `server` to `address` (TLS when `tls`); the port and the reloader, if any."""
    reloader = None
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            reloader = await CertificateReloader.open(tls, reload_interval_s, observe)
            port = server.add_secure_port(address, reloader.credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(key, address, "an address this process can bind (in use?)")
    return port, reloader


def health_only_server(servicer: HealthServicer, address: str, options: ServerOptions
                       ) -> tuple[grpc.aio.Server, int]:
    """A plaintext server answering only grpc.health.v1 (shares the main server's status)."""
    server = grpc.aio.server(options=tuple(options))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError("server.health_listen", address,
                          "an address this process can bind (in use?)")
    return server, port
