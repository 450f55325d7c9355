"""StreamChain's per-target recovery decision after a stream broke mid-answer.

Whether the next target continues the partial answer (assistant prefill) or restarts it is
decided for each target as it is tried, not once at the break: a continuation that fails
over to a target whose API cannot continue must restart, never append a new answer.
"""

from __future__ import annotations

import time

import pytest

from provider_router import domain as d
from provider_router.routing.dispatch import Chain
from provider_router.routing.streaming import StreamChain, StreamRun

REQUEST = d.ChatRequest(messages=(d.ChatMessage(d.Role.USER, "hi"),))
BROKEN = "primary/m broke after 2 deltas: PROVIDER_SERVER_ERROR"


def _chain(policy: str) -> StreamChain:
    # The dispatcher and the spec lookup play no part in the decision.
    return StreamChain(None, policy, lambda name: None)  # type: ignore[arg-type]


def _run(partial: tuple[str, ...] = ("Hel", "lo"), tools: bool = False,
         broken_at: str = BROKEN, restart_reason: str = "") -> StreamRun:
    run = StreamRun(time.perf_counter(), d.RouteDecision((), d.Strategy.FAILOVER), Chain())
    run.partial = list(partial)
    run.partial_has_tools = tools
    run.broken_at = broken_at
    run.restart_reason = restart_reason
    return run


def _spec(kind: d.ProviderKind) -> d.ProviderSpec:
    return d.ProviderSpec(name="next", kind=kind)


def _is_prefill(request: d.ChatRequest) -> bool:
    return request.messages[-1].role is d.Role.ASSISTANT


@pytest.mark.parametrize(("policy", "kind", "run_args", "prefill", "restart"), [
    # continue on an API that continues a prefill: seamless, no restart
    ("continue", d.ProviderKind.ANTHROPIC, {}, True, False),
    ("continue", d.ProviderKind.MOCK, {}, True, False),
    # continue on one that would answer anew: restart
    ("continue", d.ProviderKind.OPENAI, {}, False, True),
    ("continue", d.ProviderKind.GEMINI, {}, False, True),
    # a tool call cannot be continued by a prefill
    ("continue", d.ProviderKind.ANTHROPIC, {"partial": (), "tools": True}, False, True),
    # restart policy: always from scratch, with a restart event
    ("restart", d.ProviderKind.ANTHROPIC, {}, False, True),
    # nothing broke, or nothing of the broken answer is held: the request as it is
    ("continue", d.ProviderKind.ANTHROPIC, {"broken_at": ""}, False, False),
    ("continue", d.ProviderKind.OPENAI, {"partial": ()}, False, False),
])
def test_continue_or_restart_per_target(policy: str, kind: d.ProviderKind,
                                        run_args: dict[str, object], prefill: bool,
                                        restart: bool) -> None:
    run = _run(**run_args)  # type: ignore[arg-type]
    sent = _chain(policy)._request_for(REQUEST, _spec(kind), run)
    assert _is_prefill(sent) is prefill
    if prefill:
        assert sent.messages[-1].content == "Hello"
    assert bool(run.restart_reason) is restart


def test_a_failed_continuation_then_a_target_that_cannot_continue_restarts() -> None:
    chain, run = _chain("continue"), _run()
    assert _is_prefill(chain._request_for(REQUEST, _spec(d.ProviderKind.ANTHROPIC), run))
    # That target failed before sending anything: the caller still holds "Hello".
    sent = chain._request_for(REQUEST, _spec(d.ProviderKind.OPENAI), run)
    assert sent is REQUEST and run.restart_reason == BROKEN


def test_an_announced_restart_is_not_turned_back_into_a_continuation() -> None:
    run = _run(restart_reason=f"{BROKEN}; next refused continuation")
    sent = _chain("continue")._request_for(REQUEST, _spec(d.ProviderKind.ANTHROPIC), run)
    assert sent is REQUEST
