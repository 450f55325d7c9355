"""A fake Ollama server.

Shapes follow https://github.com/ollama/ollama/blob/main/docs/api.md: /api/chat streams
NDJSON (application/x-ndjson) and ends with a `"done": true` line carrying done_reason,
prompt_eval_count and eval_count; tool-call arguments are objects; errors are
{"error": "text"}.
"""

from __future__ import annotations

import json

from aiohttp import web

from tests.fakes.base import FakeUpstream, Frame, Json

_CREATED_AT = "2024-07-22T20:33:28.123648Z"


class OllamaFake(FakeUpstream):
    """POST /api/chat, GET /api/tags."""

    framing = "ndjson"
    content_type = "application/x-ndjson"

    def add_routes(self, app: web.Application) -> None:
        """Chat and local model listing."""
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request) or {}
        # Ollama streams unless told not to.
        return await self.serve_chat(request, body, str(body.get("model", "")),
                                     body.get("stream", True) is not False)

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        return web.json_response({"models": [{"name": "llama-fake:latest",
                                              "model": "llama-fake:latest", "size": 1}]})

    def error_body(self, status: int, code: str, message: str) -> Json:
        """{"error": "text"}."""
        return {"error": message}

    def stream_error(self) -> Frame:
        """An error line mid-stream."""
        return Frame(json.dumps({"error": "an error was encountered while running the model"}))

    def _line(self, model: str, message: Json, done: bool = False) -> Json:
        return {"model": self.script.model or model, "created_at": _CREATED_AT,
                "message": {"role": "assistant", **message}, "done": done}

    def _final(self, model: str, message: Json) -> Json:
        s = self.script
        line = self._line(model, message, done=True)
        line["done_reason"] = s.finish or "stop"
        line.update({"total_duration": 4_883_583_458, "load_duration": 1_334_875})
        if s.include_usage:
            line.update({"prompt_eval_count": s.prompt_tokens,
                         "eval_count": s.completion_tokens})
        return line

    def _calls(self) -> list[Json]:
        return [{"function": {"name": name, "arguments": json.loads(arguments)}}
                for name, arguments in self.script.tool_calls]

    def frames(self, body: Json, model: str) -> tuple[list[Frame], Frame | None]:
        """Content lines, a tool-call line, and the final done line."""
        frames = [Frame(json.dumps(self._line(model, {"content": c})))
                  for c in self.script.chunks]
        if self.script.tool_calls:
            frames.append(Frame(json.dumps(self._line(
                model, {"content": "", "tool_calls": self._calls()}))))
        return frames, Frame(json.dumps(self._final(model, {"content": ""})))

    def unary(self, body: Json, model: str) -> Json:
        """A whole-answer response with done: true."""
        message: Json = {"content": self.script.text}
        if self.script.tool_calls:
            message["tool_calls"] = self._calls()
        return self._final(model, message)
