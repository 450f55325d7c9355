"""Keys never leak: not into logs, exception messages, reprs or probe details."""

from __future__ import annotations

import logging
import traceback

import pytest

from provider_router.connectors.base import Connector
from provider_router.domain import CommandOptions, ProviderKind
from provider_router.errors import ProviderError
from provider_router.resilience.deadline import Deadline
from tests.fakes.base import FakeUpstream, Fault
from tests.fakes.harness import KEY, KEY_ENV, MODELS, command_spec, http_spec, request, settings
from tests.unit.connectors.conftest import MakeConnector

FAULTS = (
    Fault(status=401, message=f"Incorrect API key provided: {KEY}"),  # a provider echoing it
    Fault(status=429, message=f"limit for key {KEY[:12]}...", headers={"retry-after": "1"}),
    Fault(status=500, body=f"<html>upstream said {KEY}</html>"),
    Fault(malformed_at=1),
    Fault(cut_after=1),
    Fault(first_chunk_delay=1.0),
    Fault(reset_before_headers=True),
)


async def exercise(connector: Connector, kind: ProviderKind, fake: FakeUpstream) -> list[str]:
    """Run calls through every fault; return every text an operator could see."""
    seen: list[str] = [repr(connector), repr(connector.__dict__)]
    for fault in FAULTS:
        for streaming in (False, True):
            fake.fail(fault)
            try:
                if streaming:
                    async for event in connector.stream(request(model=MODELS[kind]),
                                                        Deadline.after(5)):
                        seen.append(repr(event))
                else:
                    seen.append(repr(await connector.chat(request(model=MODELS[kind]),
                                                          Deadline.after(5))))
            except ProviderError as exc:
                seen += [str(exc), repr(exc), repr(exc.args), exc.message,
                         "".join(traceback.format_exception(exc))]
    probe = await connector.probe()
    seen.append(repr(probe))
    return seen


async def test_http_connectors_never_show_the_key(
        upstream: tuple[ProviderKind, FakeUpstream], connect: MakeConnector,
        caplog: pytest.LogCaptureFixture) -> None:
    kind, fake = upstream
    caplog.set_level(logging.DEBUG)
    spec = http_spec(kind, fake)
    connector = connect(spec, settings(first_token=0.3))
    seen = await exercise(connector, kind, fake)
    seen += [repr(spec), str(spec)]
    logged = caplog.text + "".join(
        logging.Formatter().format(record) for record in caplog.records)
    assert KEY in fake.chat_requests()[0].headers.get(
        {"anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(kind.value, "authorization"),
        "")  # the key did travel, in its header
    assert KEY not in logged
    for text in seen:
        assert KEY not in text
        assert KEY[:12] not in text  # not even the prefix the 429 body echoed


async def test_command_agent_secret_is_redacted_from_stderr(connect: MakeConnector) -> None:
    spec = command_spec("fail")
    argv = (*spec.command.argv[:2], "fail", *spec.command.argv[3:])  # type: ignore[union-attr]
    script = ("import os,sys; print('token=' + os.environ['AGENT_TOKEN'], file=sys.stderr);"
              " sys.exit(2)")
    spec = command_spec("fail", command=CommandOptions(
        argv=(argv[0], "-c", script), required_envs=("AGENT_TOKEN",)))
    connector = connect(spec, settings(env={"AGENT_TOKEN": KEY, KEY_ENV: KEY}))
    with pytest.raises(ProviderError) as caught:
        await connector.chat(request(), Deadline.after(10))
    assert "status 2" in caught.value.message
    assert KEY not in str(caught.value)
