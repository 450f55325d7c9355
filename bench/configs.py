"""The server configs the harness generates: openai_compatible providers on the mock upstream.

The called providers point at the one mock process; the path prefix `/mock/<chunks>/<delay ms>`
shapes its streams (see mock_upstream.py). The full router runs: routing, breakers, rate
limits off (none configured, as most deployments), metrics on, info-level logging.
"""

from __future__ import annotations

from dataclasses import dataclass

FAST = "bench-fast"
CHUNKY = "bench-chunky"
SLOW = "bench-slow"
SHARED = "bench-shared"
"""A model served by every one of the many-provider config's providers."""


@dataclass(frozen=True, slots=True)
class ServerShape:
    """What one benchmark server is given."""

    listen: str
    metrics_port: int
    mock_port: int
    chunky_chunks: int = 20
    slow_chunks: int = 10
    slow_delay_ms: int = 1000
    extra_providers: int = 0
    workers: int = 1
    state_url: str = "memory://"
    # Give the called provider a rate limit and max_concurrent, far above the load, so every
    # call goes through admission (the state scenario: memory:// vs redis:// limits).
    limits: bool = False


def _provider(name: str, models: list[str], base_url: str, max_concurrent: int = 0,
              rpm: int = 0) -> str:
    quoted = ", ".join(f'"{m}"' for m in models)
    lines = [
        "[[providers]]",
        f'name = "{name}"',
        'kind = "openai_compatible"' if base_url else 'kind = "mock"',
        f"models = [{quoted}]",
        "priority = 10" if name == FAST else "priority = 1",
    ]
    if base_url:
        lines.append(f'base_url = "{base_url}"')
    if max_concurrent:
        # The provider's connection pool: a slow upstream needs one connection per stream.
        lines.append(f"max_concurrent = {max_concurrent}")
    if rpm:
        lines.append(f"rate_limit_rpm = {rpm}")
    return "\n".join(lines) + "\n"


def server_config(shape: ServerShape) -> str:
    """The TOML config for `provider-router serve --config`."""
    mock = f"http://127.0.0.1:{shape.mock_port}"
    parts = [
        "[server]",
        f'listen = "{shape.listen}"',
        "drain_delay = 0.0",
        "grace = 5.0",
        f"workers = {shape.workers}",
        "",
        "[logging]",
        'level = "info"',
        "",
        "[state]",
        f'url = "{shape.state_url}"',
        'registry_file = "none"',
        "",
        "[metrics]",
        f"port = {shape.metrics_port}",
        'host = "127.0.0.1"',
        "",
        "[autoregister]",
        "enabled = false",
        "",
        _provider(FAST, [FAST], f"{mock}/v1", *((10_000, 100_000_000) if shape.limits else ())),
        _provider(CHUNKY, [CHUNKY], f"{mock}/mock/{shape.chunky_chunks}/0/v1"),
        _provider(SLOW, [SLOW], f"{mock}/mock/{shape.slow_chunks}/{shape.slow_delay_ms}/v1",
                  max_concurrent=20_000),
    ]
    # Built-in mock providers: Route never calls them, and they open no sockets for probes.
    parts.extend(_provider(f"bench-{i:04d}", [f"bench-own-{i}", SHARED], "")
                 for i in range(shape.extra_providers))
    return "\n".join(parts)
