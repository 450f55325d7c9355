"""Typed Python client for provider_router.v1.RouterService (sync and async)."""

from provider_router_client.client import (
    AsyncRouterClient,
    RouterClient,
    text_request,
    tls_credentials,
)

__all__ = ["AsyncRouterClient", "RouterClient", "text_request", "tls_credentials"]
