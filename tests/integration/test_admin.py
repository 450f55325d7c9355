"""Admin RPCs end to end: validation details, UpdateMetrics blending, persistence."""

from __future__ import annotations

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.integration.conftest import StartRouter
from tests.integration.details import violations


async def test_register_reports_one_violation_per_problem(start_router: StartRouter) -> None:
    router = await start_router()
    spec = pb.ProviderSpec(name="Bad Name!", kind=pb.PROVIDER_KIND_OPENAI_COMPATIBLE,
                           base_url="ftp://example.com", priority=5,
                           models=[pb.ModelSpec(name="m"), pb.ModelSpec(name="m"),
                                   pb.ModelSpec(name="", input_per_mtok=-1)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = violations(info.value)
    assert {"provider.name", "provider.base_url", "provider.models[1].name",
            "provider.models[2].name", "provider.models[2].input_per_mtok"} <= fields.keys()
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    assert [p.spec.name for p in listing.providers] == ["mock"]  # nothing half-registered


async def test_unspecified_kind_is_invalid(start_router: StartRouter) -> None:
    router = await start_router()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Register(pb.RegisterRequest(provider=pb.ProviderSpec(name="x")),
                                   timeout=5)
    assert "provider.kind" in violations(info.value)


async def test_update_metrics_blends_and_shows_in_list(start_router: StartRouter) -> None:
    router = await start_router()
    request = pb.UpdateMetricsRequest(provider="mock", avg_latency_ms=250.0, error_rate=0.2,
                                      load=0.5)
    response = await router.stub.UpdateMetrics(request, timeout=5)
    assert response.status.reported.avg_latency_ms == 250.0
    assert response.status.latency_ema_ms == 250.0  # nothing observed yet: the report alone
    assert response.status.error_rate == pytest.approx(0.2)
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(names=["mock"]), timeout=5)
    assert listing.providers[0].status.reported.error_rate == pytest.approx(0.2)


async def test_update_metrics_rejects_bad_values_and_unknown_providers(
        start_router: StartRouter) -> None:
    router = await start_router()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.UpdateMetrics(pb.UpdateMetricsRequest(provider="ghost", load=0.1),
                                        timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.UpdateMetrics(pb.UpdateMetricsRequest(provider="mock", error_rate=3),
                                        timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_list_unknown_name_is_not_found(start_router: StartRouter) -> None:
    router = await start_router()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.ListProviders(pb.ListProvidersRequest(names=["ghost"]), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_runtime_registration_survives_a_restart(start_router: StartRouter) -> None:
    first = await start_router()
    spec = pb.ProviderSpec(name="keeper", kind=pb.PROVIDER_KIND_OPENAI_COMPATIBLE,
                           base_url="http://127.0.0.1:9/v1", api_key="sk-write-only-secret-1",
                           models=[pb.ModelSpec(name="k-1")])
    await first.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
    await first.app.shutdown(drain_delay_s=0, grace_s=0)
    second = await start_router()  # same registry file (tmp_path)
    listing = await second.stub.ListProviders(pb.ListProvidersRequest(names=["keeper"]),
                                              timeout=5)
    kept = listing.providers[0].spec
    assert kept.base_url == "http://127.0.0.1:9/v1"
    assert kept.api_key_set and kept.api_key == ""
    assert "sk-write-only-secret-1" not in str(listing)


async def test_validate_only_changes_nothing(start_router: StartRouter) -> None:
    router = await start_router()
    spec = pb.ProviderSpec(name="dry", kind=pb.PROVIDER_KIND_MOCK, models=[pb.ModelSpec(name="d")])
    response = await router.stub.Register(pb.RegisterRequest(provider=spec, validate_only=True),
                                          timeout=5)
    assert response.created
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    assert "dry" not in [p.spec.name for p in listing.providers]


async def test_register_cannot_send_a_configured_key_elsewhere(start_router: StartRouter) -> None:
    router = await start_router(env={"OPENAI_API_KEY": "sk-host-secret-value-0001"})
    spec = pb.ProviderSpec(name="thief", kind=pb.PROVIDER_KIND_OPENAI_COMPATIBLE,
                           base_url="https://evil.example/v1", api_key_env="OPENAI_API_KEY",
                           models=[pb.ModelSpec(name="m")])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "provider.api_key_env" in violations(info.value)
    spec.api_key_env = "HOME"  # any other host variable is outside the allowlist
    with pytest.raises(grpc.aio.AioRpcError):
        await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
