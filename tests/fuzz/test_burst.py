"""The "100k messages" case: one request per RPC carrying 100,000 entries in its repeated
field (chat messages, provider names, tenant names, models), each answered in time with no
INTERNAL/UNKNOWN status and no server traceback. PROVIDER_ROUTER_FUZZ_BURST changes the count.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.message import Message

from provider_router.v1 import router_pb2 as pb
from tests.fuzz.conftest import TENANT_KEY, ProblemLog
from tests.fuzz.test_fuzz_rpcs import ADMIN_KEY, call, check

COUNT = int(os.environ.get("PROVIDER_ROUTER_FUZZ_BURST", "100000"))


def _messages() -> list[pb.ChatMessage]:
    return [pb.ChatMessage(role=pb.ROLE_USER, content="hi")] * COUNT


def _register() -> pb.RegisterRequest:
    spec = pb.ProviderSpec(name="burst", kind=pb.PROVIDER_KIND_MOCK,
                           models=[pb.ModelSpec(name=f"m{i}") for i in range(COUNT)])
    return pb.RegisterRequest(provider=spec, validate_only=True)


REQUESTS: dict[str, Callable[[], Message]] = {
    "Chat": lambda: pb.ChatRequest(messages=_messages()),
    "StreamChat": lambda: pb.StreamChatRequest(messages=_messages()),
    "Route": lambda: pb.RouteRequest(messages=_messages()),
    "ListProviders": lambda: pb.ListProvidersRequest(names=["mock"] * COUNT),
    "GetUsage": lambda: pb.GetUsageRequest(tenants=["acme"] * COUNT),
    "Register": _register,
    "Unregister": lambda: pb.UnregisterRequest(name="x" * COUNT),
}
DATA_PLANE = ("Chat", "StreamChat", "Route")
CASES = [(method, ADMIN_KEY) for method in sorted(REQUESTS)] + [
    (method, TENANT_KEY) for method in DATA_PLANE]


@pytest.mark.parametrize(("method", "key"), CASES)
def test_a_hundred_thousand_entries(method: str, key: str, channel: grpc.Channel,
                                    problem_log: ProblemLog) -> None:
    problem_log.take()
    payload = REQUESTS[method]().SerializeToString()
    code = call(channel, method, payload, key)
    check(code, problem_log, f"{method} with {COUNT} entries")
