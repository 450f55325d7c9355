"""Chaos: every scenario type of the independent failover benchmark (issue 15), in ONE router
that keeps running across all of them, with the README's defaults.

Set-up as a new user has it: no `[resilience]` or `[connectors]` keys at all, one primary
provider serving many models (one per scenario, plus `ok`, a healthy model checked after every
scenario) and a fallback provider of another kind (Anthropic), asked for by a routing rule for
bare model names, or by the request's own `fallbacks` for `primary/<model>`. Every scenario
checks that the faulty model was really reached (a scenario that passes only because an
earlier one took the provider out proves nothing) and that the provider's other models were
left alone.

The scenarios that wait on default timeouts (a silent upstream: the 10 s first-token timeout;
a stall: the 30 s idle timeout) run side by side with the sequence of quick ones, in the same
router, so the suite pays the longest wait once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault
from tests.fakes.harness import KEY_ENV
from tests.integration.chaos import ENV, Answer, Streamed, error_reason, outcomes
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
RATE_LIMITED = pb.ATTEMPT_OUTCOME_RATE_LIMITED
PROVIDER_ERROR = pb.ATTEMPT_OUTCOME_PROVIDER_ERROR
CONNECTION_FAILED = pb.ATTEMPT_OUTCOME_CONNECTION_FAILED
TIMEOUT = pb.ATTEMPT_OUTCOME_TIMEOUT
REJECTED = pb.ATTEMPT_OUTCOME_REJECTED
BROKEN = pb.ATTEMPT_OUTCOME_STREAM_BROKEN
SKIPPED = pb.ATTEMPT_OUTCOME_SKIPPED
FALLBACK = ("fallback", "fb-1")
PRIMARY_PRICE = (1.0, 2.0)   # USD per Mtok in, out
FALLBACK_PRICE = (3.0, 4.0)
MODELS = ("ok", "ra429", "no429", "e500", "e503", "reset", "silent", "silentclose", "slowtok",
          "cut", "stall", "malformed", "nodone", "ctx", "filter", "prefill", "flap", "acct", "acct2")
TEXT = "Hello, world!"


def _config(primary: FakeUpstream, fallback: FakeUpstream) -> str:
    models = "\n".join(
        f'[[providers.models]]\nname = "{m}"\ninput_per_mtok = {PRIMARY_PRICE[0]}\n'
        f"output_per_mtok = {PRIMARY_PRICE[1]}" + ("\ncontext_window = 1000" if m == "ctx" else "")
        for m in MODELS)
    return f"""
# The README's defaults: nothing under [resilience] or [connectors].
[[routing.rules]]
name = "fallback-provider"
provider = "primary"
fallbacks = ["{FALLBACK[0]}/{FALLBACK[1]}"]

[[providers]]
name = "primary"
kind = "openai"
base_url = "{primary.base_url}"
api_key_env = "{KEY_ENV}"
priority = 10
{models}

[[providers]]
name = "fallback"
kind = "anthropic"
base_url = "{fallback.base_url}"
api_key_env = "{KEY_ENV}"
[[providers.models]]
name = "{FALLBACK[1]}"
input_per_mtok = {FALLBACK_PRICE[0]}
output_per_mtok = {FALLBACK_PRICE[1]}
context_window = 200000
"""


class Bench:
    """The one router, its two upstreams, and calls the way a benchmark client makes them."""

    def __init__(self, router: RunningRouter, primary: FakeUpstream,
                 fallback: FakeUpstream) -> None:
        self.router = router
        self.primary = primary
        self.fallback = fallback

    def routing(self, model: str, own_fallback: bool) -> pb.RoutingOptions:
        # Half the scenarios rely on the rule (bare model name), half name their fallback.
        if own_fallback:
            return pb.RoutingOptions(model=f"primary/{model}", fallbacks=[
                pb.RouteTarget(provider=FALLBACK[0], model=FALLBACK[1])])
        return pb.RoutingOptions(model=model)

    async def call(self, mode: str, model: str, *, own_fallback: bool = False,
                   messages: list[pb.ChatMessage] | None = None,
                   timeout: float = 30.0) -> Answer:
        """Chat or StreamChat that must succeed."""
        routing = self.routing(model, own_fallback)
        messages = messages or [pb.ChatMessage(role=pb.ROLE_USER, content="Say hello")]
        started = time.monotonic()
        if mode == "chat":
            r = await self.router.stub.Chat(pb.ChatRequest(routing=routing, messages=messages),
                                            timeout=timeout)
            return Answer(r.provider, r.model, r.message.content, r.finish_reason, r.usage,
                          r.cost_usd if r.HasField("cost_usd") else None, list(r.attempts),
                          time.monotonic() - started)
        events = [e async for e in self.router.stub.StreamChat(
            pb.StreamChatRequest(routing=routing, messages=messages), timeout=timeout)]
        streamed = Streamed(events, None, time.monotonic() - started)
        end = streamed.end
        return Answer(end.provider, end.model, streamed.text_after_restart(), end.finish_reason,
                      end.usage, end.cost_usd if end.HasField("cost_usd") else None,
                      list(end.attempts), streamed.elapsed, streamed)

    async def fail(self, mode: str, model: str,
                   messages: list[pb.ChatMessage] | None = None) -> grpc.aio.AioRpcError:
        """Chat or StreamChat that must fail; its error."""
        try:
            await self.call(mode, model, messages=messages, timeout=10.0)
        except grpc.aio.AioRpcError as error:
            return error
        raise AssertionError(f"{mode} of {model} succeeded")

    async def healthy(self) -> None:
        """The provider's healthy model still answers at once, first try, from the primary."""
        for mode in ("chat", "stream"):
            got = await self.call(mode, "ok")
            assert outcomes(got.attempts) == [("primary", SUCCESS)], got.attempts
            assert got.text == TEXT

    async def reason(self, model: str) -> int:
        """Route's exclusion reason for `primary/<model>` (0 when eligible)."""
        decision = await self.router.stub.Route(
            pb.RouteRequest(routing=self.routing(model, own_fallback=True)), timeout=5)
        return next(int(c.exclusion_reason) for c in decision.candidates
                    if (c.provider, c.model) == ("primary", model))

    def reached(self, model: str) -> int:
        """How many requests for `model` the primary received."""
        return len(self.primary.requests_for(model))


def _price(price: tuple[float, float], prompt: int = 12, completion: int = 5) -> float:
    return (prompt * price[0] + completion * price[1]) / 1_000_000


# --- the quick scenarios, in sequence --------------------------------------------------------


async def _429_with_retry_after(b: Bench) -> None:
    b.primary.fail(Fault(status=429, headers={"Retry-After": "2"}, model="ra429"))
    got = await b.call("chat", "ra429")
    # Routed around at once, not after sleeping on Retry-After, and the target cools down.
    assert outcomes(got.attempts) == [("primary", RATE_LIMITED), ("fallback", SUCCESS)]
    assert got.elapsed < 1.8 and got.text == TEXT
    got = await b.call("stream", "ra429")
    assert outcomes(got.attempts) == [("fallback", SUCCESS)]
    assert b.reached("ra429") == 1
    await b.healthy()  # a 429 of one model never touches the others
    await asyncio.sleep(max(0.0, b.primary.requests_for("ra429")[0].at + 2.05 - time.monotonic()))
    for mode in ("chat", "stream"):
        got = await b.call(mode, "ra429")
        assert outcomes(got.attempts) == [("primary", SUCCESS)]


async def _429_without_retry_after(b: Bench) -> None:
    b.primary.fail(Fault(status=429, model="no429", times=2))
    got = await b.call("chat", "no429", own_fallback=True)
    assert outcomes(got.attempts) == [("primary", RATE_LIMITED), ("fallback", SUCCESS)]
    await asyncio.sleep(1.05)  # the default cooldown: 1 s
    got = await b.call("stream", "no429", own_fallback=True)
    assert outcomes(got.attempts) == [("primary", RATE_LIMITED), ("fallback", SUCCESS)]
    await b.healthy()
    # Limited again right after its cooldown: this one lasts twice as long (2 s).
    await asyncio.sleep(1.05)
    assert await b.reason("no429") == pb.EXCLUSION_REASON_COOLDOWN
    await asyncio.sleep(1.0)
    got = await b.call("chat", "no429", own_fallback=True)
    assert outcomes(got.attempts) == [("primary", SUCCESS)]
    assert b.reached("no429") == 3


async def _500_once(b: Bench) -> None:
    for mode in ("chat", "stream"):
        b.primary.fail(Fault(status=500, model="e500"))
        got = await b.call(mode, "e500")
        assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR), ("primary", SUCCESS)]
    await b.healthy()


async def _503_persistent(b: Bench) -> None:
    b.primary.down_model("e503")
    got = await b.call("chat", "e503", own_fallback=True)
    # Retried (3 attempts, jittered backoff), then the fallback; the model's breaker opens.
    assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR)] * 3 + [("fallback", SUCCESS)]
    assert got.elapsed < 2.0
    got = await b.call("stream", "e503", own_fallback=True)
    assert outcomes(got.attempts) == [("fallback", SUCCESS)]  # skipped: breaker open
    assert b.reached("e503") == 3
    await b.healthy()  # the breaker is the model's, not the provider's
    b.primary.recover_model("e503")


async def _reset(b: Bench) -> None:
    for mode in ("chat", "stream"):
        b.primary.fail(Fault(reset_before_headers=True, model="reset"))
        got = await b.call(mode, "reset")
        assert outcomes(got.attempts) == [("primary", CONNECTION_FAILED), ("primary", SUCCESS)]
    await b.healthy()


async def _stream_cut(b: Bench) -> None:
    b.primary.fail(Fault(cut_after=2, model="cut"))
    got = await b.call("stream", "cut")
    assert got.streamed is not None
    kinds = got.streamed.kinds()
    # Deltas had reached the caller: a restart event, then the fallback's whole answer.
    assert "restart" in kinds and kinds[-1] == "end"
    assert got.text == TEXT and got.provider == "fallback"
    assert outcomes(got.attempts) == [("primary", BROKEN), ("fallback", SUCCESS)]
    await b.healthy()


async def _malformed_chunk(b: Bench) -> None:
    b.primary.fail(Fault(malformed_at=0, model="malformed"))
    got = await b.call("stream", "malformed")
    # One unparseable chunk is skipped (and logged); the rest of the answer is whole.
    assert outcomes(got.attempts) == [("primary", SUCCESS)]
    assert got.text == TEXT
    await b.healthy()


async def _missing_done(b: Bench) -> None:
    b.primary.fail(Fault(omit_terminator=True, model="nodone"))
    got = await b.call("stream", "nodone")
    # The finish reason and usage arrived; only [DONE] is missing: a complete answer.
    assert outcomes(got.attempts) == [("primary", SUCCESS)]
    assert got.text == TEXT and got.finish_reason == pb.FINISH_REASON_STOP
    assert b.reached("nodone") == 1
    await b.healthy()


async def _context_length(b: Bench) -> None:
    for mode in ("chat", "stream"):
        b.primary.fail(Fault(status=400, code="context_length_exceeded", model="ctx",
                             message="This model's maximum context length is 1000 tokens."))
        got = await b.call(mode, "ctx", own_fallback=True)
        # Not retried; moved to the fallback, whose window is larger.
        assert outcomes(got.attempts) == [("primary", REJECTED), ("fallback", SUCCESS)]
        assert got.attempts[0].reason == "CONTEXT_LENGTH_EXCEEDED"
    assert b.reached("ctx") == 2
    await b.healthy()


async def _content_filter(b: Bench) -> None:
    for mode in ("chat", "stream"):
        b.primary.fail(Fault(status=400, code="content_policy_violation", model="filter",
                             message="Your request was rejected by the safety system"))
        error = await b.fail(mode, "filter")
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "CONTENT_POLICY"
        assert "safety system" in (error.details() or "")
    assert b.reached("filter") == 2
    # The request's fault, not the model's: no breaker, the same model serves the next one.
    got = await b.call("chat", "filter")
    assert outcomes(got.attempts) == [("primary", SUCCESS)]
    await b.healthy()


async def _prefill_rejection(b: Bench) -> None:
    prefill = [pb.ChatMessage(role=pb.ROLE_USER, content="Say hello"),
               pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="Hello")]
    for mode in ("chat", "stream"):
        b.primary.fail(Fault(status=400, code="invalid_request_error", model="prefill",
                             message="assistant prefill is not supported for this model"))
        error = await b.fail(mode, "prefill", messages=prefill)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "prefill is not supported" in (error.details() or "")
    assert b.reached("prefill") == 2  # never retried
    got = await b.call("chat", "prefill", messages=prefill)
    assert outcomes(got.attempts) == [("primary", SUCCESS)]  # no breaker was harmed
    await b.healthy()


async def _flapping_primary(b: Bench) -> None:
    async def until_primary(within: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < within:
            got = await b.call("chat", "flap")
            if got.provider == "primary":
                return time.monotonic() - started
            assert got.provider == "fallback"
            await asyncio.sleep(0.05)
        raise AssertionError(f"no traffic back to the primary within {within} s")

    for _ in range(2):  # down, back, down again, back again
        b.primary.down_model("flap")
        got = await b.call("chat", "flap")
        assert got.provider == "fallback"  # three attempts open the model's breaker
        b.primary.recover_model("flap")
        # The first half-open trial comes after 2 s (breaker_reset_initial), not 30 s.
        assert await until_primary(within=8.0) <= 5.0
    await b.healthy()


async def _failover_accounting(b: Bench) -> None:
    for mode, model in (("chat", "acct"), ("stream", "acct2")):
        b.primary.down_model(model)
        got = await b.call(mode, model, own_fallback=True)
        # Every attempt listed, in order; provider, model, usage and cost are the fallback's.
        assert [(a.provider, a.model, a.outcome) for a in got.attempts] == [
            ("primary", model, PROVIDER_ERROR)] * 3 + [(*FALLBACK, SUCCESS)]
        assert [a.status_code for a in got.attempts] == [503, 503, 503, 0]
        assert all(a.duration.ToTimedelta().total_seconds() > 0 for a in got.attempts)
        assert (got.provider, got.model) == FALLBACK
        assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (12, 5)
        assert got.cost_usd == pytest.approx(_price(FALLBACK_PRICE))
        assert b.reached(model) == 3
    await b.healthy()


QUICK: tuple[Callable[[Bench], Awaitable[None]], ...] = (
    _429_with_retry_after, _429_without_retry_after, _500_once, _503_persistent, _reset,
    _stream_cut, _malformed_chunk, _missing_done, _context_length, _content_filter,
    _prefill_rejection, _flapping_primary, _failover_accounting)


# --- the scenarios that wait on default timeouts, side by side ----------------------------


async def _silent_upstream_stream(b: Bench) -> None:
    b.primary.fail(Fault(headers_delay=3600.0, model="silent"))
    got = await b.call("stream", "silent")
    # The default first-token timeout (10 s), once: never retried on the silent route.
    assert outcomes(got.attempts) == [("primary", TIMEOUT), ("fallback", SUCCESS)]
    assert "first_token timeout after 10s" in got.attempts[0].error
    assert 9.5 <= got.elapsed < 14.0 and got.text == TEXT


async def _silent_upstream_chat(b: Bench) -> None:
    await asyncio.sleep(0.5)  # after the stream scenario has taken its fault
    b.primary.fail(Fault(headers_delay=3600.0, model="silent"))
    # A unary answer arrives whole, so only the deadline bounds it: the primary gets the
    # deadline less the 2 s kept for the fallback (retry.attempt_timeout).
    got = await b.call("chat", "silent", timeout=8.0)
    assert outcomes(got.attempts) == [("primary", TIMEOUT), ("fallback", SUCCESS)]
    assert got.elapsed < 8.0


async def _silent_then_close(b: Bench) -> None:
    for mode in ("chat", "stream"):
        b.primary.fail(Fault(close_after=3.0, model="silentclose"))
        got = await b.call(mode, "silentclose", own_fallback=True)
        # 3 s of silence then a close: a first-token timeout, not a retryable reset.
        assert outcomes(got.attempts) == [("primary", TIMEOUT), ("fallback", SUCCESS)]
        assert got.elapsed < 5.0
    assert b.reached("silentclose") == 2


async def _slow_first_token(b: Bench) -> None:
    b.primary.fail(Fault(first_chunk_delay=4.0, model="slowtok"))
    got = await b.call("stream", "slowtok")
    # Slow but inside the first-token timeout: the primary's answer, no failover.
    assert outcomes(got.attempts) == [("primary", SUCCESS)]
    assert got.text == TEXT and got.elapsed >= 3.9


async def _stall(b: Bench) -> None:
    b.primary.fail(Fault(stall_after=2, model="stall"))
    got = await b.call("stream", "stall", timeout=60.0)
    assert got.streamed is not None and "restart" in got.streamed.kinds()
    # The default idle timeout (30 s) ends the stall; the fallback restarts the answer.
    assert outcomes(got.attempts) == [("primary", BROKEN), ("fallback", SUCCESS)]
    assert "idle timeout" in got.attempts[0].error
    assert got.text == TEXT


SLOW = (_silent_upstream_stream, _silent_upstream_chat, _silent_then_close, _slow_first_token,
        _stall)


async def test_every_benchmark_scenario_in_one_long_running_router_with_defaults(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary, fallback = await fakes(), await fakes("anthropic")
    bench = Bench(await start_router(_config(primary, fallback), env=ENV), primary, fallback)
    await bench.healthy()

    async def quick() -> list[str]:
        done = []
        for scenario in QUICK:
            await scenario(bench)
            done.append(scenario.__name__)
        return done

    finished = await asyncio.wait_for(
        asyncio.gather(quick(), *(scenario(bench) for scenario in SLOW)), timeout=120)
    assert len(finished[0]) == len(QUICK)
    await bench.healthy()
    # One router all along: every scenario's faulty model was reached at least once.
    for model in MODELS:
        assert bench.reached(model) >= 1, model
