"""Tenants end to end: keys map to tenants, policy and budgets apply, spend is reported."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from provider_router.tenants import hash_key
from provider_router.v1 import router_pb2 as pb
from tests.integration.conftest import StartRouter

ACME_KEY = "acme-key-0123456789abcdef"
BETA_KEY = "beta-key-0123456789abcdef"
FLAT_KEY = "flat-client-key-0123456789"
ADMIN_KEY = "admin-key-0123456789abcdef"
ENV = {"PROVIDER_ROUTER_CLIENT_KEYS": FLAT_KEY, "PROVIDER_ROUTER_ADMIN_KEYS": ADMIN_KEY}

# $1 per token in and out: one mock answer costs whole dollars, so any budget below $1 is
# spent by the first call.
CONFIG = f"""
[routing]
default_provider = "mock"
default_model = "m"

[[providers]]
name = "mock"
kind = "mock"
models = [{{ name = "m", input_per_mtok = 1000000.0, output_per_mtok = 1000000.0 }}]

[[providers]]
name = "other"
kind = "mock"
models = [{{ name = "o", input_per_mtok = 1000000.0, output_per_mtok = 1000000.0 }},
          {{ name = "m", input_per_mtok = 1000000.0, output_per_mtok = 1000000.0 }}]

[[tenants]]
name = "acme"
key_sha256 = ["{hash_key(ACME_KEY)}"]
models = ["m", "mock/*"]
providers = ["mock"]
budget_usd_day = 0.5

[[tenants]]
name = "beta"
key_sha256 = ["{hash_key(BETA_KEY)}"]
rpm = 2
"""


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _chat(model: str = "", attributes: dict[str, str] | None = None) -> pb.ChatRequest:
    return pb.ChatRequest(routing=pb.RoutingOptions(model=model, attributes=attributes or {}),
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello")])


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def _retry_s(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        if detail.Is(retry.DESCRIPTOR):
            detail.Unpack(retry)
            return retry.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo")


async def test_budget_is_enforced_before_the_call_with_reason_and_retry(
        start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    first = await router.stub.Chat(_chat(), timeout=10, metadata=_auth(ACME_KEY))
    assert first.cost_usd >= 1.0  # over the $0.50 budget after one call
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(_chat(), timeout=10, metadata=_auth(ACME_KEY))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    error_info = _error_info(info.value)
    assert error_info.reason == "BUDGET_EXCEEDED"
    assert error_info.metadata["tenant"] == "acme"
    assert error_info.metadata["period"] == "day"
    assert float(error_info.metadata["limit_usd"]) == 0.5
    assert float(error_info.metadata["spent_usd"]) == pytest.approx(first.cost_usd)
    assert 0 < _retry_s(info.value) <= 86_400
    # Streams are refused the same way, before any provider is called.
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in router.stub.StreamChat(
                pb.StreamChatRequest(messages=_chat().messages), timeout=10,
                metadata=_auth(ACME_KEY)):
            pass
    assert _error_info(streamed.value).reason == "BUDGET_EXCEEDED"
    # Another tenant is unaffected.
    assert (await router.stub.Chat(_chat(), timeout=10, metadata=_auth(BETA_KEY))).provider


async def test_stream_spend_is_recorded_and_reported(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    events = [e async for e in router.stub.StreamChat(
        pb.StreamChatRequest(messages=_chat().messages), timeout=10, metadata=_auth(BETA_KEY))]
    end = events[-1].end
    # A tenant named many times is reported once.
    usage = await router.stub.GetUsage(pb.GetUsageRequest(tenants=["beta"] * 500), timeout=5,
                                       metadata=_auth(ADMIN_KEY))
    [beta] = usage.tenants
    assert beta.spent_day_usd == pytest.approx(end.cost_usd) and end.cost_usd > 0
    assert beta.spent_month_usd == pytest.approx(end.cost_usd)
    [line] = beta.day_lines
    assert (line.provider, line.requests) == ("mock", 1)
    assert line.prompt_tokens == end.usage.prompt_tokens
    assert line.completion_tokens == end.usage.completion_tokens


async def test_usage_reports_every_tenant_budget_and_remaining(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    await router.stub.Chat(_chat(), timeout=10, metadata=_auth(FLAT_KEY))
    report = await router.stub.GetUsage(pb.GetUsageRequest(), timeout=5,
                                        metadata=_auth(ADMIN_KEY))
    by_name = {u.tenant: u for u in report.tenants}
    assert list(by_name) == ["acme", "beta", "(none)"]
    assert by_name["acme"].budget_day_usd == 0.5
    assert by_name["acme"].remaining_day_usd == 0.5
    assert by_name["(none)"].spent_day_usd > 0  # flat-key callers are accounted too
    listing = await router.stub.ListTenants(pb.ListTenantsRequest(), timeout=5,
                                            metadata=_auth(ADMIN_KEY))
    assert [(t.name, t.key_count, t.rpm) for t in listing.tenants] == [("acme", 1, 0),
                                                                         ("beta", 1, 2)]
    assert hash_key(ACME_KEY) not in str(listing)


async def test_usage_rpcs_need_the_admin_key(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    for key in (ACME_KEY, FLAT_KEY):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.stub.GetUsage(pb.GetUsageRequest(), timeout=5, metadata=_auth(key))
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.stub.ListTenants(pb.ListTenantsRequest(), timeout=5,
                                          metadata=_auth(key))
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_tenant_in_usage_is_not_found(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.GetUsage(pb.GetUsageRequest(tenants=["nobody"]), timeout=5,
                                   metadata=_auth(ADMIN_KEY))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_model_and_provider_allow_lists(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(_chat("o"), timeout=10, metadata=_auth(ACME_KEY))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _error_info(info.value).reason == "MODEL_NOT_ALLOWED"
    # Both providers serve "m"; the other one is excluded from acme's routing.
    preferring_other = pb.RouteRequest(routing=pb.RoutingOptions(
        model="m", prefer_providers=["other"]))
    decision = await router.stub.Route(preferring_other, timeout=5, metadata=_auth(ACME_KEY))
    assert decision.provider == "mock"
    with pytest.raises(grpc.aio.AioRpcError) as named:
        await router.stub.Chat(_chat("other/m"), timeout=10, metadata=_auth(ACME_KEY))
    assert named.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _error_info(named.value).reason == "PROVIDER_NOT_ALLOWED"
    # The flat key is not limited by acme's lists.
    flat = await router.stub.Route(preferring_other, timeout=5, metadata=_auth(FLAT_KEY))
    assert flat.provider == "other"
    answer = await router.stub.Chat(_chat("o"), timeout=10, metadata=_auth(FLAT_KEY))
    assert answer.provider == "other"


async def test_tenant_rpm_refuses_with_retry_info(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    for _ in range(2):
        await router.stub.Chat(_chat(), timeout=10, metadata=_auth(BETA_KEY))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(_chat(), timeout=10, metadata=_auth(BETA_KEY))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _error_info(info.value).reason == "TENANT_RATE_LIMITED"
    assert 0 < _retry_s(info.value) <= 30.0
    # acme's bucket is its own.
    await router.stub.Chat(_chat(), timeout=10, metadata=_auth(ACME_KEY))


async def test_authenticated_tenant_overrides_the_tenant_attribute(
        start_router: StartRouter) -> None:
    rules = CONFIG.replace('default_model = "m"\n', '''default_model = "m"

[[routing.rules]]
name = "beta-to-other"
conditions = { tenant = "beta" }
provider = "other"
model = "o"
''')
    router = await start_router(rules, ENV)
    beta = await router.stub.Route(pb.RouteRequest(), timeout=5, metadata=_auth(BETA_KEY))
    assert (beta.rule, beta.provider) == ("beta-to-other", "other")
    # acme claims to be beta: the rule must not match (acme is who the key says).
    claimed = pb.RouteRequest(routing=pb.RoutingOptions(attributes={"tenant": "beta"}))
    acme = await router.stub.Route(claimed, timeout=5, metadata=_auth(ACME_KEY))
    assert (acme.rule, acme.provider) == ("", "mock")
    # A flat key's claim is dropped as well.
    flat = await router.stub.Route(claimed, timeout=5, metadata=_auth(FLAT_KEY))
    assert (flat.rule, flat.provider) == ("", "mock")


async def test_tenants_file_keys_authenticate(start_router: StartRouter, tmp_path: Path) -> None:
    key = "file-tenant-key-0123456789"
    path = tmp_path / "tenants.toml"
    path.write_text(f'[[tenants]]\nname = "gamma"\nkey_sha256 = ["{hash_key(key)}"]\n')
    router = await start_router("[auth]\ntenants_file = " + f'"{path}"\n', ENV)
    answer = await router.stub.Chat(_chat(), timeout=10, metadata=_auth(key))
    assert answer.provider == "mock"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(_chat(), timeout=10, metadata=_auth(key + "x"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_without_tenants_usage_is_empty(start_router: StartRouter) -> None:
    router = await start_router()
    assert not (await router.stub.GetUsage(pb.GetUsageRequest(), timeout=5)).tenants
    assert not (await router.stub.ListTenants(pb.ListTenantsRequest(), timeout=5)).tenants
