"""Every RPC of RouterService, driven with hostile messages generated from the descriptors.

For every call: no INTERNAL or UNKNOWN status, no server traceback or error log, and an
answer within the deadline (5 s; PROVIDER_ROUTER_FUZZ_DEADLINE_S to change). CI runs a few
hundred examples in all; PROVIDER_ROUTER_FUZZ_EXAMPLES=N runs N per property (the long run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_router.v1 import router_pb2 as pb
from tests.fuzz.conftest import ADMIN_KEY, CLIENT_KEY, TENANT_KEY, ProblemLog, examples
from tests.fuzz.proto_strategies import Limits, messages, wire_garbage

SERVICE = pb.DESCRIPTOR.services_by_name["RouterService"]
METHODS = {m.name: m for m in SERVICE.methods}
DEADLINE_S = float(os.environ.get("PROVIDER_ROUTER_FUZZ_DEADLINE_S", "5"))
FAILURES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.DEADLINE_EXCEEDED)
KEYS = (ADMIN_KEY, TENANT_KEY, CLIENT_KEY)
FUZZ = settings(max_examples=examples(25), deadline=None, derandomize=False,
                suppress_health_check=list(HealthCheck))


def call(channel: grpc.Channel, method: str, payload: bytes, key: str = ADMIN_KEY
         ) -> grpc.StatusCode:
    """Send raw bytes as the request of `method`; the status code of the answer."""
    descriptor = METHODS[method]
    path = f"/{SERVICE.full_name}/{method}"
    metadata = (("authorization", f"Bearer {key}"),)
    try:
        if descriptor.server_streaming:
            for _ in channel.unary_stream(path)(payload, timeout=DEADLINE_S, metadata=metadata):
                pass
        else:
            channel.unary_unary(path)(payload, timeout=DEADLINE_S, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def check(code: grpc.StatusCode, problem_log: ProblemLog, what: str) -> None:
    """The fuzz oracle."""
    problems = problem_log.take()
    assert not problems, f"{what}: the server logged:\n" + "\n".join(problems)
    assert code not in FAILURES, f"{what}: {code.name}"


def tame_register(request: Message) -> Message:
    """Register requests that would change what other examples run against are validated
    only: every non-mock kind (no process or network is started for a fuzzed spec), the
    `mock` everybody routes to, and mocks that would sleep."""
    assert isinstance(request, pb.RegisterRequest)
    spec = request.provider
    if (spec.kind != pb.PROVIDER_KIND_MOCK or spec.name == "mock"
            or spec.mock.latency.seconds or spec.mock.latency.nanos):
        request.validate_only = True
    return request


def _strategy(method: str) -> st.SearchStrategy[Message]:
    strategy = messages(METHODS[method].input_type, Limits())
    return strategy.map(tame_register) if method == "Register" else strategy


@pytest.fixture
def problem_free(problem_log: ProblemLog) -> Iterator[ProblemLog]:
    problem_log.take()
    yield problem_log


@pytest.mark.parametrize("method", sorted(METHODS))
def test_generated_messages(method: str, channel: grpc.Channel, problem_free: ProblemLog
                            ) -> None:
    @FUZZ
    @given(request=_strategy(method), key=st.sampled_from(KEYS))
    def run(request: Message, key: str) -> None:
        code = call(channel, method, request.SerializeToString(), key)
        check(code, problem_free, f"{method}({str(request)[:2000]!r})")

    run()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_wire_garbage(method: str, channel: grpc.Channel, problem_free: ProblemLog) -> None:
    @FUZZ
    @given(payload=wire_garbage(METHODS[method].input_type))
    def run(payload: bytes) -> None:
        code = call(channel, method, payload)
        assert code is not grpc.StatusCode.OK or method in ("ListProviders", "ListTenants",
                                                            "GetUsage", "Route"), payload[:80]
        check(code, problem_free, f"{method}(raw {payload[:200]!r})")

    run()
