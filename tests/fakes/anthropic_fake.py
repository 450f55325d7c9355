"""A fake Anthropic Messages API server.

Shapes follow https://docs.anthropic.com/en/api/messages and the event flow of
https://docs.anthropic.com/en/docs/build-with-claude/streaming: message_start, ping,
content_block_start/delta/stop per block, message_delta (stop_reason, cumulative
output_tokens), message_stop.
"""

from __future__ import annotations

import json

from aiohttp import web

from tests.fakes.base import FakeUpstream, Frame, Json


class AnthropicFake(FakeUpstream):
    """POST /v1/messages, GET /v1/models."""

    def add_routes(self, app: web.Application) -> None:
        """Messages and model listing."""
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    def authorized(self, request: web.Request) -> bool:
        """x-api-key check (when a key is required) and the version header."""
        if "anthropic-version" not in request.headers:
            return False
        return self.required_key is None or request.headers.get("x-api-key") == self.required_key

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request) or {}
        return await self.serve_chat(request, body, str(body.get("model", "")),
                                     bool(body.get("stream")))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        if not self.authorized(request):
            return web.json_response(self.error_body(401, "authentication_error", "bad key"),
                                     status=401)
        return web.json_response({"data": [{"type": "model", "id": "claude-fake",
                                            "display_name": "Claude Fake"}],
                                  "has_more": False, "first_id": "claude-fake",
                                  "last_id": "claude-fake"})

    def error_body(self, status: int, code: str, message: str) -> Json:
        """{"type": "error", "error": {"type", "message"}}."""
        kind = code or {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_error(self) -> Frame:
        """The in-stream error event (e.g. overloaded mid-answer)."""
        return Frame(json.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded"}}), "error")

    def _stop_reason(self) -> str:
        return self.script.finish or ("tool_use" if self.script.tool_calls else "end_turn")

    def _event(self, payload: Json) -> Frame:
        return Frame(json.dumps(payload), str(payload["type"]))

    def frames(self, body: Json, model: str) -> tuple[list[Frame], Frame | None]:
        """The full Messages event flow; message_stop is the terminator."""
        s = self.script
        model = s.model or model
        frames = [self._event({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": s.prompt_tokens, "output_tokens": 1}}}),
            self._event({"type": "ping"})]
        index = 0
        if s.chunks:
            frames.append(self._event({"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}))
            frames += [self._event({"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": c}})
                       for c in s.chunks]
            frames.append(self._event({"type": "content_block_stop", "index": 0}))
            index = 1
        for offset, (name, arguments) in enumerate(s.tool_calls):
            block = index + offset
            frames.append(self._event({"type": "content_block_start", "index": block,
                                       "content_block": {"type": "tool_use",
                                                         "id": f"toolu_{offset}",
                                                         "name": name, "input": {}}}))
            half = len(arguments) // 2
            frames += [self._event({"type": "content_block_delta", "index": block,
                                    "delta": {"type": "input_json_delta", "partial_json": p}})
                       for p in (arguments[:half], arguments[half:])]
            frames.append(self._event({"type": "content_block_stop", "index": block}))
        frames.append(self._event({"type": "message_delta",
                                   "delta": {"stop_reason": self._stop_reason(),
                                             "stop_sequence": None},
                                   "usage": {"output_tokens": s.completion_tokens}}))
        return frames, self._event({"type": "message_stop"})

    def unary(self, body: Json, model: str) -> Json:
        """A Message object."""
        s = self.script
        content: list[Json] = [{"type": "text", "text": s.text}] if s.text else []
        content += [{"type": "tool_use", "id": f"toolu_{i}", "name": name,
                     "input": json.loads(arguments)}
                    for i, (name, arguments) in enumerate(s.tool_calls)]
        return {"id": "msg_fake", "type": "message", "role": "assistant", "content": content,
                "model": s.model or model, "stop_reason": self._stop_reason(),
                "stop_sequence": None,
                "usage": {"input_tokens": s.prompt_tokens, "output_tokens": s.completion_tokens}}
