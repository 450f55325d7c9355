"""Command-line agents (Claude Code, Codex, Aider, scripts) as providers.

`spec.command.argv` runs directly (never through a shell) with these placeholders replaced
inside each argument:

- `{prompt_file}`: a temporary UTF-8 file holding the conversation. A lone user message is
  written as its text; a longer conversation as "Role: text" blocks separated by blank
  lines (tool calls as "[tool call name(arguments)]"). Images are not passed on.
- `{model}`: the requested model name.
- `{output_file}`: a temporary file the agent may write its answer to; it is read instead
  of stdout when `command.read_output_file` is set (then the answer arrives in one piece).

Accepted output, one item per line (details in connectors/agent_output.py):
`{"type": "text", "text": ...}` deltas; Claude Code's stream-json `{"type": "assistant",
"message": {"content": [{"type": "text", ...}]}}`; a final `{"type": "result", "result": ...,
"usage": {"input_tokens", "output_tokens"}}` (its text used only if no text came before);
`{"type": "error", "message": ...}` fails the call; other JSON objects are ignored; any
other line is plain answer text.

Exit status 0 ends the answer cleanly; any other status fails the call with the tail of
stderr. The agent runs in its own process group, which is killed (and reaped) when the
deadline or a phase timeout passes or the caller cancels. Usage is estimated unless the
agent reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from pathlib import Path

from provider_router.connectors.agent_output import AgentOutput
from provider_router.connectors.errormap import scrub
from provider_router.connectors.settings import ConnectorSettings
from provider_router.connectors.streaming import collect
from provider_router.connectors.timing import PhaseClock, PhaseTimeouts
from provider_router.domain import (
    ChatRequest,
    ChatResult,
    CommandOptions,
    ProbeResult,
    ProviderRequest,
    ProviderSpec,
    Role,
    StreamEvent,
)
from provider_router.errors import (
    ProviderProtocolError,
    ProviderServerError,
    ProviderUnavailableError,
)
from provider_router.resilience.deadline import Deadline

# Agents print whole JSON events per line; some (tool results) are large.
_LINE_LIMIT = 4 * 1024 * 1024
# Enough stderr to explain a failure.
_STDERR_TAIL = 2000
# How long a failed agent's stderr may take to reach its end.
_STDERR_GRACE_S = 0.5


def availability(spec: ProviderSpec, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether the agent can run here: its binary on PATH and its required env vars set."""
    options = spec.command
    if options is None or not options.argv:
        return False, "no command configured"
    program = options.argv[0]
    if shutil.which(program, path=env.get("PATH") or os.environ.get("PATH")) is None:
        return False, f"binary '{program}' not found on PATH"
    missing = [name for name in options.required_envs if not env.get(name)]
    if missing:
        return False, f"set required env {', '.join(missing)}"
    return True, ""


def render_prompt(chat: ChatRequest) -> str:
    """The prompt file's text for a conversation."""
    messages = chat.messages
    if len(messages) == 1 and not messages[0].tool_calls and messages[0].role is Role.USER:
        return messages[0].text()
    blocks: list[str] = []
    for message in messages:
        body = message.text()
        calls = [f"[tool call {c.name}({c.arguments_json})]" for c in message.tool_calls]
        blocks.append(f"{message.role.value.capitalize()}: " + "\n".join([body, *calls]).strip())
    return "\n\n".join(blocks)


def build_argv(argv: tuple[str, ...], prompt_file: str, model: str,
               output_file: str) -> list[str]:
    """The argv with placeholders replaced; plain replace, so other braces stay as they are."""
    values = {"{prompt_file}": prompt_file, "{model}": model, "{output_file}": output_file}
    out: list[str] = []
    for arg in argv:
        for placeholder, value in values.items():
            arg = arg.replace(placeholder, value)
        out.append(arg)
    return out


class CommandConnector:
    """Runs a command-line agent per request."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings) -> None:
        self.spec = spec
        self._options = spec.command or CommandOptions()
        self._env = settings.env
        self._timeouts = PhaseTimeouts.resolve(spec.timeouts, settings.default_timeouts)
        self._closed = False

    async def chat(self, request: ProviderRequest, deadline: Deadline) -> ChatResult:
        """Run the agent to completion."""
        async with aclosing(self._run(request, deadline, streaming=False)) as events:
            return await collect(self.spec.name, events, request.model)

    def stream(self, request: ProviderRequest,
               deadline: Deadline) -> AsyncGenerator[StreamEvent, None]:
        """Stream the agent's output as it prints it; closing the stream kills the agent."""
        return self._run(request, deadline, streaming=True)

    async def probe(self) -> ProbeResult:
        """Availability only: running an agent would spend tokens."""
        ok, reason = await asyncio.to_thread(availability, self.spec, self._env)
        return ProbeResult(ok, reason)

    async def aclose(self) -> None:
        """No pooled resources; later calls fail as for any closed connector."""
        self._closed = True

    async def _run(self, request: ProviderRequest, deadline: Deadline, *,
                   streaming: bool) -> AsyncGenerator[StreamEvent, None]:
        ok, reason = await asyncio.to_thread(availability, self.spec, self._env)
        if self._closed or not ok:
            raise ProviderUnavailableError(self.spec.name, reason or "connector is closed")
        # An agent that writes an output file shows nothing until it exits: no first token
        # to time, only the total.
        timed_phases = streaming and not self._options.read_output_file
        clock = PhaseClock(self.spec.name, self._timeouts, deadline, streaming=timed_phases)
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="provider-router-"))
        try:
            prompt_file, output_file = workdir / "prompt.txt", workdir / "output.txt"
            await asyncio.to_thread(prompt_file.write_text, render_prompt(request.chat),
                                    "utf-8")
            argv = build_argv(self._options.argv, str(prompt_file), request.model,
                              str(output_file))
            process = await self._spawn(argv, workdir)
            try:
                async with aclosing(self._events(process, clock, request, output_file)) as events:
                    async for event in events:
                        yield event
            finally:
                await _stop(process)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _spawn(self, argv: list[str], workdir: Path) -> asyncio.subprocess.Process:
        # With an output file, stdout is not read; DEVNULL keeps a chatty agent from
        # blocking on a full pipe.
        stdout = (asyncio.subprocess.DEVNULL if self._options.read_output_file
                  else asyncio.subprocess.PIPE)
        try:
            return await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
                stderr=asyncio.subprocess.PIPE, cwd=workdir, env={**os.environ, **self._env},
                limit=_LINE_LIMIT, start_new_session=True)
        except OSError as exc:
            raise ProviderUnavailableError(
                self.spec.name, f"cannot start '{argv[0]}': {exc.strerror or exc}") from exc

    async def _events(self, process: asyncio.subprocess.Process, clock: PhaseClock,
                      request: ProviderRequest,
                      output_file: Path) -> AsyncGenerator[StreamEvent, None]:
        output = AgentOutput(self.spec.name, request)
        stderr = _StderrTail(process.stderr)
        try:
            if process.stdout is None:
                await clock.wait(process.wait())
                for line in await asyncio.to_thread(_read_lines, output_file):
                    for event in output.feed(line):
                        yield event
            else:
                async with aclosing(self._stdout(process.stdout, clock, output)) as events:
                    async for event in events:
                        yield event
            status = await clock.wait(process.wait())
            if status != 0:
                raise ProviderServerError(
                    self.spec.name, f"agent exited with status {status}: "
                    f"{self._redact(await stderr.text())}")
            for event in output.close():
                yield event
            yield output.finish(request.model)
        finally:
            await stderr.aclose()

    async def _stdout(self, stdout: asyncio.StreamReader, clock: PhaseClock,
                      output: AgentOutput) -> AsyncGenerator[StreamEvent, None]:
        while True:
            try:
                raw = await clock.wait(stdout.readline())
            except ValueError:  # a line beyond _LINE_LIMIT
                raise ProviderProtocolError(self.spec.name, "agent output line too long") from None
            if not raw:
                return
            for event in output.feed(raw.decode("utf-8", errors="replace")):
                clock.saw_delta()
                yield event

    def _redact(self, message: str) -> str:
        # The agent sees our env; if it echoes a required secret, it must not travel on.
        for name in self._options.required_envs:
            value = self._env.get(name, "")
            if len(value) >= 8:
                message = message.replace(value, "[redacted]")
        return scrub(message) or "no stderr"


class _StderrTail:
    """Drains an agent's stderr (so the pipe never fills) and keeps its last part."""

    def __init__(self, stream: asyncio.StreamReader | None) -> None:
        self._tail = b""
        self._task = asyncio.create_task(self._drain(stream)) if stream is not None else None

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._tail = (self._tail + chunk)[-_STDERR_TAIL:]

    async def text(self) -> str:
        """The tail so far, after a short wait for the rest (grandchildren may hold it open)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=_STDERR_GRACE_S)
        return self._tail.decode("utf-8", errors="replace").strip()

    async def aclose(self) -> None:
        """Stop draining."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Kill the agent's process group if it still runs, and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if hasattr(os, "killpg"):
                os.killpg(process.pid, signal.SIGKILL)  # its own group: start_new_session
            else:
                process.kill()
    await process.wait()


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text("utf-8", errors="replace").splitlines(keepends=True)
    except FileNotFoundError:
        return []
