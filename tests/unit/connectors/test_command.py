"""The command connector, with a small Python script as the agent."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from provider_router.connectors import command
from provider_router.connectors.agent_output import AgentOutput
from provider_router.connectors.factory import availability
from provider_router.domain import (
    ChatMessage,
    ChatRequest,
    CommandOptions,
    FinishReason,
    ProviderKind,
    ProviderSpec,
    Role,
    StreamFinish,
    TextDelta,
    ToolCall,
    Usage,
)
from provider_router.errors import (
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from provider_router.resilience.deadline import Deadline
from tests.fakes.harness import command_spec, request, settings
from tests.unit.connectors.conftest import MakeConnector


def test_placeholders_are_replaced_inside_arguments_without_a_shell() -> None:
    argv = ("agent", "--prompt={prompt_file}", "-m", "{model}", "{output_file}", "{literal}")
    assert command.build_argv(argv, "/tmp/p", "m1", "/tmp/o") == [
        "agent", "--prompt=/tmp/p", "-m", "m1", "/tmp/o", "{literal}"]


def test_prompt_rendering() -> None:
    assert command.render_prompt(ChatRequest((ChatMessage(Role.USER, "Just this"),))) == (
        "Just this")
    chat = ChatRequest((ChatMessage(Role.SYSTEM, "Be nice"), ChatMessage(Role.USER, "Hi"),
                        ChatMessage(Role.ASSISTANT, tool_calls=(ToolCall("1", "f", "{}"),))))
    assert command.render_prompt(chat) == (
        "System: Be nice\n\nUser: Hi\n\nAssistant: [tool call f({})]")


def test_output_lines() -> None:
    output = AgentOutput("p", request("hello"))
    assert output.feed('{"type": "text", "text": "a"}\n') == [TextDelta("a")]
    assert output.feed("plain line\n") == [TextDelta("plain line\n")]
    assert output.feed("[1, 2]\n") == [TextDelta("[1, 2]\n")]  # JSON, but not an object
    assert output.feed('{"type": "system", "subtype": "init"}\n') == []
    assert output.feed('{"type": "result", "result": "ignored: text already came",'
                       ' "usage": {"input_tokens": 4, "output_tokens": 2}}') == []
    assert output.close() == []
    assert output.finish("m") == StreamFinish(FinishReason.STOP, Usage(4, 2, 6), "m")
    with pytest.raises(ProviderServerError, match="agent error: nope"):
        output.feed('{"type": "result", "is_error": true, "result": "nope"}')


def test_availability(tmp_path: Path) -> None:
    assert command.availability(command_spec("stream"), {}) == (True, "")
    missing = ProviderSpec("c", ProviderKind.COMMAND,
                           command=CommandOptions(argv=("claude-not-installed-xyz",)))
    assert availability(missing, {}) == (
        False, "binary 'claude-not-installed-xyz' not found on PATH")
    needs_env = command_spec("stream", command=CommandOptions(
        argv=(sys.executable,), required_envs=("AGENT_TOKEN", "OTHER")))
    assert availability(needs_env, {"OTHER": "x"}) == (False, "set required env AGENT_TOKEN")
    assert availability(needs_env, {"OTHER": "x", "AGENT_TOKEN": "y"}) == (True, "")
    assert availability(ProviderSpec("c", ProviderKind.COMMAND), {})[0] is False


async def test_streams_json_lines_and_reports_usage(connect: MakeConnector) -> None:
    connector = connect(command_spec("stream"))
    events = [e async for e in connector.stream(request("hi there", model="m1"),
                                                Deadline.after(20))]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: hi there "
    assert len(events) == 4  # three words, then the finish
    assert events[-1] == StreamFinish(FinishReason.STOP, Usage(7, 3, 10), "m1")


async def test_claude_code_stream_json(connect: MakeConnector) -> None:
    result = await connect(command_spec("claude")).chat(request("q"), Deadline.after(20))
    assert result.text == "echo: q"  # the result line does not repeat the streamed text
    assert result.usage.estimated


async def test_plain_text_output_and_model_placeholder(connect: MakeConnector) -> None:
    result = await connect(command_spec("plain")).chat(request("q", model="big-model"),
                                                        Deadline.after(20))
    assert result.text == "line one\nmodel=big-model\n"
    assert result.finish_reason is FinishReason.STOP


async def test_output_file(connect: MakeConnector) -> None:
    spec = command_spec("outfile")
    spec = ProviderSpec(spec.name, spec.kind, command=CommandOptions(
        argv=spec.command.argv, read_output_file=True))  # type: ignore[union-attr]
    result = await connect(spec).chat(request("from file"), Deadline.after(20))
    assert result.text == "echo: from file"


async def test_nonzero_exit_fails_with_stderr(connect: MakeConnector) -> None:
    with pytest.raises(ProviderServerError, match="status 3: boom: the agent broke"):
        await connect(command_spec("fail")).chat(request(), Deadline.after(20))


async def test_error_line_fails(connect: MakeConnector) -> None:
    with pytest.raises(ProviderServerError, match="quota exhausted"):
        await connect(command_spec("error")).chat(request(), Deadline.after(20))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_killed_when_the_deadline_passes(connect: MakeConnector, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    connector = connect(command_spec("hang"), settings(env={"AGENT_PID_FILE": str(pid_file)}))
    events: list[object] = []
    with pytest.raises(ProviderTimeoutError) as caught:
        async for event in connector.stream(request(), Deadline.after(1.0)):
            events.append(event)
    assert caught.value.phase == "total"
    assert events == [TextDelta("thinking...")]
    assert not alive(int(pid_file.read_text()))


async def test_silent_agent_hits_first_token_timeout(connect: MakeConnector,
                                                     tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    connector = connect(command_spec("silent"),
                        settings(first_token=0.5, env={"AGENT_PID_FILE": str(pid_file)}))
    with pytest.raises(ProviderTimeoutError) as caught:
        await anext(aiter(connector.stream(request(), Deadline.after(10))))
    assert caught.value.phase == "first_token"
    assert not alive(int(pid_file.read_text()))


async def test_killed_when_the_caller_cancels(connect: MakeConnector, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    connector = connect(command_spec("hang"), settings(env={"AGENT_PID_FILE": str(pid_file)}))
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in connector.stream(request(), Deadline.after(30)):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    pid = int(pid_file.read_text())
    assert alive(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(pid)


async def test_unavailable_agent_raises_and_probes_false(connect: MakeConnector) -> None:
    spec = command_spec("stream", command=CommandOptions(argv=(sys.executable,),
                                                          required_envs=("MISSING_ENV",)))
    connector = connect(spec)
    with pytest.raises(ProviderUnavailableError, match="MISSING_ENV"):
        await connector.chat(request(), Deadline.after(5))
    probe = await connector.probe()
    assert not probe.ok and "MISSING_ENV" in probe.detail
    assert (await connect(command_spec("stream")).probe()).ok
