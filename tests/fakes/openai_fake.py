"""A fake OpenAI Chat Completions server (also the OpenAI-compatible one).

Shapes follow https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming: chunks carry
`"usage": null` until the extra usage chunk (`"choices": []`) that `include_usage` asks
for, then `data: [DONE]`.
"""

from __future__ import annotations

import json

from aiohttp import web

from tests.fakes.base import FakeUpstream, Frame, Json

_CREATED = 1_700_000_000


class OpenAIFake(FakeUpstream):
    """POST /v1/chat/completions, GET /v1/models."""

    prefix = "/v1"

    def add_routes(self, app: web.Application) -> None:
        """Chat and model listing."""
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request) or {}
        return await self.serve_chat(request, body, str(body.get("model", "")),
                                     bool(body.get("stream")))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        if not self.authorized(request):
            return web.json_response(self.error_body(401, "invalid_api_key", "bad key"),
                                     status=401)
        return web.json_response({"object": "list", "data": [
            {"id": "gpt-fake", "object": "model", "created": _CREATED, "owned_by": "fake"}]})

    def error_body(self, status: int, code: str, message: str) -> Json:
        """{"error": {"message", "type", "param", "code"}}."""
        kind = code or ("rate_limit_exceeded" if status == 429 else "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": code or None}}

    def stream_error(self) -> Frame:
        """An error object in place of a chunk."""
        return Frame(json.dumps({"error": {"message": "The server had an error",
                                           "type": "server_error", "code": None}}))

    def _finish(self) -> str:
        return self.script.finish or ("tool_calls" if self.script.tool_calls else "stop")

    def _chunk(self, model: str, delta: Json, finish: str | None = None,
               with_usage: bool = True) -> Frame:
        chunk: Json = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                       "created": _CREATED, "model": model, "system_fingerprint": "fp_fake",
                       "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]}
        if with_usage:
            chunk["usage"] = None
        return Frame(json.dumps(chunk))

    def _usage(self) -> Json:
        s = self.script
        return {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                "total_tokens": s.prompt_tokens + s.completion_tokens}

    def frames(self, body: Json, model: str) -> tuple[list[Frame], Frame | None]:
        """Role chunk, content chunks, tool-call fragments, finish chunk, usage chunk."""
        model = self.script.model or model
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage = usage and self.script.include_usage
        frames = [self._chunk(model, {"role": "assistant", "content": ""}, None, usage)]
        frames += [self._chunk(model, {"content": c}, None, usage) for c in self.script.chunks]
        for index, (name, arguments) in enumerate(self.script.tool_calls):
            frames.append(self._chunk(model, {"tool_calls": [{
                "index": index, "id": f"call_{index}", "type": "function",
                "function": {"name": name, "arguments": ""}}]}, None, usage))
            half = len(arguments) // 2
            for fragment in (arguments[:half], arguments[half:]):
                frames.append(self._chunk(model, {"tool_calls": [{
                    "index": index, "function": {"arguments": fragment}}]}, None, usage))
        frames.append(self._chunk(model, {}, self._finish(), usage))
        if usage:
            frames.append(Frame(json.dumps({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": _CREATED,
                "model": model, "choices": [], "usage": self._usage()})))
        return frames, Frame("[DONE]")

    def unary(self, body: Json, model: str) -> Json:
        """A chat.completion object."""
        message: Json = {"role": "assistant", "content": self.script.text or None,
                         "refusal": None}
        if self.script.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(self.script.tool_calls)]
        result: Json = {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": _CREATED,
            "model": self.script.model or model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": self._finish()}]}
        if self.script.include_usage:
            result["usage"] = self._usage()
        return result
