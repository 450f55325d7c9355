"""What a command-line agent prints, line by line, turned into stream events.

Accepted lines (one per line, UTF-8):

- `{"type": "text", "text": "..."}`: a fragment of the answer.
- `{"type": "assistant", "message": {"content": [{"type": "text", "text": "..."}]}}`:
  Claude Code's `--output-format stream-json` assistant turn; its text blocks are answer text.
- `{"type": "result", "result": "...", "usage": {"input_tokens": n, "output_tokens": m},
  "is_error": false}`: the final answer. Its text is used only when no text arrived before
  (so agents that print deltas and a summary are not doubled); its usage, when present, is
  reported as the provider's own count.
- `{"type": "error", "message": "..."}` (or `"error"`), or a result with `"is_error": true`:
  the call fails.
- Any other JSON object (system, progress, tool events): ignored.
- Anything that is not a JSON object: plain text, kept with its line break.
"""

from __future__ import annotations

from collections.abc import Mapping

from provider_router.connectors.anthropic import input_tokens
from provider_router.connectors.errormap import scrub
from provider_router.connectors.payload import field, integer, items, obj, parse_json, text
from provider_router.connectors.streaming import estimate_usage
from provider_router.domain import (
    FinishReason,
    JsonObject,
    ProviderRequest,
    StreamEvent,
    StreamFinish,
    TextDelta,
    Usage,
)
from provider_router.errors import ProviderServerError


class AgentOutput:
    """Accumulates one agent run's output lines into events and a final StreamFinish."""

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        self._provider = provider
        self._request = request
        self._texts: list[str] = []
        self._final_text = ""
        self._usage: Usage | None = None

    def feed(self, raw_line: str) -> list[StreamEvent]:
        """Events from one output line (with or without its line break)."""
        line = raw_line.rstrip("\r\n")
        try:
            value = parse_json(line) if line.lstrip().startswith("{") else None
        except ValueError:
            value = None
        if not isinstance(value, Mapping):
            return self._text(line + "\n" if raw_line.endswith("\n") else line)
        return self._json(value)

    def _json(self, payload: JsonObject) -> list[StreamEvent]:
        kind = text(payload.get("type"))
        if kind == "text":
            return self._text(text(payload.get("text")))
        if kind == "assistant":
            blocks = items(field(payload, "message", "content"))
            return self._text("".join(text(field(b, "text")) for b in blocks
                                      if text(field(b, "type")) == "text"))
        if kind == "error" or (kind == "result" and payload.get("is_error") is True):
            message = (text(payload.get("message")) or text(payload.get("error"))
                       or text(payload.get("result")) or "agent reported an error")
            raise ProviderServerError(self._provider, f"agent error: {scrub(message)}")
        if kind == "result":
            self._final_text = text(payload.get("result"))
            self._usage = _usage(obj(payload.get("usage"))) or self._usage
        return []

    def _text(self, fragment: str) -> list[StreamEvent]:
        if not fragment:
            return []
        self._texts.append(fragment)
        return [TextDelta(fragment)]

    def close(self) -> list[StreamEvent]:
        """The result's text, if the agent printed no text before it."""
        if self._texts or not self._final_text:
            return []
        return self._text(self._final_text)

    def finish(self, model: str) -> StreamFinish:
        """The final event of a run that exited cleanly."""
        usage = self._usage or estimate_usage(self._request, "".join(self._texts))
        return StreamFinish(FinishReason.STOP, usage, model)


def _usage(usage: JsonObject) -> Usage | None:
    # Claude Code reports the Messages API's usage shape, cache reads and writes included.
    if "input_tokens" not in usage and "output_tokens" not in usage:
        return None
    prompt = input_tokens(usage)
    completion = integer(usage.get("output_tokens"))
    return Usage(prompt, completion, prompt + completion)
