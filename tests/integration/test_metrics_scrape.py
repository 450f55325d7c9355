"""The /metrics scrape after real traffic: promtool accepts it, and it says what happened.

The real server serves /metrics over HTTP (prometheus_client's exposition, as in
production) after unary, streaming, failing and failover calls against real HTTP fakes; the
scrape is checked by `promtool check metrics` (Debian package `prometheus`; .ci/run installs
it when missing) and read back for the counts the calls must have left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.base import Fault
from tests.integration.chaos import Upstream, chat_request, serve, stream_request
from tests.integration.conftest import Fakes, RunningRouter, StartRouter
from tests.redis.server import free_port

PROMTOOL = shutil.which("promtool")


async def traffic_scrape(start_router: StartRouter, fakes: Fakes) -> tuple[RunningRouter, str]:
    """A router after one call of each kind, and its /metrics text (fetched over HTTP)."""
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)], retry_max_attempts=1)
    stub = router.stub
    await stub.Chat(chat_request(), timeout=10)                              # unary
    assert [e async for e in stub.StreamChat(stream_request(), timeout=10)]  # streaming
    primary.fail(Fault(status=500))
    assert (await stub.Chat(chat_request(), timeout=10)).provider == "backup"  # failover
    primary.down()
    backup.down()
    with pytest.raises(grpc.aio.AioRpcError):                                # failing
        await stub.Chat(chat_request(), timeout=10)
    port = free_port()
    router.app.metrics.serve("127.0.0.1", port)
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        return router, await response.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return scrape.get((name, frozenset(labels.items())), 0.0)


# In CI (CI=true) a missing promtool fails the test instead of skipping it.
@pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                    reason="promtool is not installed (apt-get install prometheus)")
async def test_promtool_accepts_the_scrape(start_router: StartRouter, fakes: Fakes) -> None:
    _, text = await traffic_scrape(start_router, fakes)
    assert PROMTOOL is not None
    checked = await asyncio.to_thread(
        subprocess.run, [PROMTOOL, "check", "metrics"], input=text, capture_output=True,
        text=True, timeout=60, check=False)
    assert checked.returncode == 0 and not checked.stdout.strip() \
        and not checked.stderr.strip(), checked.stdout + checked.stderr


async def test_the_scrape_counts_the_calls_by_method_code_provider_and_outcome(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, text = await traffic_scrape(start_router, fakes)
    scrape = samples(text)
    assert value(scrape, "provider_router_rpcs_total", method="Chat", code="OK") == 2
    assert value(scrape, "provider_router_rpcs_total", method="Chat", code="UNAVAILABLE") == 1
    assert value(scrape, "provider_router_rpcs_total", method="StreamChat", code="OK") == 1
    assert value(scrape, "provider_router_rpc_seconds_count", method="Chat") == 3
    # Attempts: primary answered the unary and the streaming call, then failed twice.
    for provider, outcome, count in (("primary", "success", 2), ("primary", "provider_error", 2),
                                     ("backup", "success", 1), ("backup", "provider_error", 1)):
        assert value(scrape, "provider_router_attempts_total", provider=provider,
                     model=f"{provider}-model", outcome=outcome) == count, (provider, outcome)
    assert value(scrape, "provider_router_upstream_seconds_count", provider="primary",
                 model="primary-model") == 4
    # Tokens and spend of the three answers (the fakes report 12 prompt + 5 completion).
    assert value(scrape, "provider_router_tokens_total", provider="primary",
                 model="primary-model", direction="input") == 24
    assert value(scrape, "provider_router_tokens_total", provider="backup",
                 model="backup-model", direction="output") == 5
    assert value(scrape, "provider_router_cost_usd_total", provider="backup",
                 model="backup-model") == pytest.approx((12 * 3.0 + 5 * 4.0) / 1e6)
    assert value(scrape, "provider_router_time_to_first_token_seconds_count",
                 provider="primary", model="primary-model") == 1
    assert value(scrape, "provider_router_overhead_seconds_count", method="Chat") == 2
    assert value(scrape, "provider_router_overhead_seconds_count", method="StreamChat") == 1
    assert value(scrape, "provider_router_open_streams") == 0
    assert value(scrape, "provider_router_breaker_state", provider="backup", state="closed") == 1
    assert value(scrape, "provider_router_breaker_state", provider="backup", state="open") == 0
    assert value(scrape, "provider_router_provider_up", provider="backup") == 1
    assert value(scrape, "provider_router_providers") == 2
    assert value(scrape, "provider_router_event_loop_lag_seconds_count") > 0
    await router.app.shutdown(drain_delay_s=0, grace_s=0)


async def test_an_unregistered_provider_leaves_the_gauges(start_router: StartRouter,
                                                          fakes: Fakes) -> None:
    from provider_router.v1 import router_pb2 as pb

    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    await router.stub.Unregister(pb.UnregisterRequest(name="backup"), timeout=10)
    registry = router.app.metrics.registry
    assert registry.get_sample_value("provider_router_providers") == 1
    assert registry.get_sample_value("provider_router_provider_up", {"provider": "backup"}) is None
    assert registry.get_sample_value("provider_router_breaker_state",
                                     {"provider": "backup", "state": "closed"}) is None
    assert registry.get_sample_value("provider_router_provider_up", {"provider": "primary"}) == 1
