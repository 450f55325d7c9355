"""A fake Gemini API server (v1beta).

Shapes follow https://ai.google.dev/api/generate-content: `:streamGenerateContent?alt=sse`
sends whole GenerateContentResponse objects as SSE data (CRLF-framed like the real
service), with no terminator: the last one carries finishReason and the final
usageMetadata. Errors are google.rpc.Status objects.
"""

from __future__ import annotations

import json

from aiohttp import web

from tests.fakes.base import FakeUpstream, Frame, Json


class GeminiFake(FakeUpstream):
    """POST /v1beta/models/{model}:generateContent|streamGenerateContent, GET /v1beta/models."""

    prefix = "/v1beta"
    always_crlf = True  # the real service frames its SSE with CRLF

    def add_routes(self, app: web.Application) -> None:
        """Generation and model listing."""
        app.router.add_post("/v1beta/models/{call}", self._generate)
        app.router.add_get("/v1beta/models", self._models)

    def authorized(self, request: web.Request) -> bool:
        """x-goog-api-key check (when a key is required); a key in the URL is refused."""
        if "key" in request.query:
            return False
        return (self.required_key is None
                or request.headers.get("x-goog-api-key") == self.required_key)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request) or {}
        model, _, method = request.match_info["call"].partition(":")
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            return web.json_response(self.error_body(400, "INVALID_ARGUMENT", "want alt=sse"),
                                     status=400)
        return await self.serve_chat(request, body, model, stream)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        if not self.authorized(request):
            return web.json_response(self.error_body(403, "PERMISSION_DENIED", "bad key"),
                                     status=403)
        return web.json_response({"models": [{"name": "models/gemini-fake",
                                              "displayName": "Gemini Fake"}]})

    def error_body(self, status: int, code: str, message: str) -> Json:
        """google.rpc.Status: {"error": {"code", "message", "status"}}."""
        default = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 400: "INVALID_ARGUMENT",
                   401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}.get(status, "INTERNAL")
        return {"error": {"code": status, "message": message, "status": code or default}}

    def stream_error(self) -> Frame:
        """An error object in place of a response chunk."""
        return Frame(json.dumps(self.error_body(500, "INTERNAL", "An internal error occurred")))

    def _response(self, model: str, parts: list[Json], finish: str | None,
                  final: bool) -> Json:
        s = self.script
        candidate: Json = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        usage: Json = {"promptTokenCount": s.prompt_tokens, "totalTokenCount": s.prompt_tokens}
        if final:
            usage = {"promptTokenCount": s.prompt_tokens,
                     "candidatesTokenCount": s.completion_tokens,
                     "totalTokenCount": s.prompt_tokens + s.completion_tokens}
        response: Json = {"candidates": [candidate], "modelVersion": s.model or model,
                          "responseId": "resp_fake"}
        if s.include_usage:
            response["usageMetadata"] = usage
        return response

    def _calls(self) -> list[Json]:
        return [{"functionCall": {"name": name, "args": json.loads(arguments)}}
                for name, arguments in self.script.tool_calls]

    def frames(self, body: Json, model: str) -> tuple[list[Frame], Frame | None]:
        """Text chunks, a function-call chunk, and a final chunk with finishReason."""
        s = self.script
        frames = [Frame(json.dumps(self._response(model, [{"text": c}], None, False)))
                  for c in s.chunks]
        if s.tool_calls:
            frames.append(Frame(json.dumps(self._response(model, self._calls(), None, False))))
        final = self._response(model, [{"text": ""}], s.finish or "STOP", True)
        # The finish chunk is the only end signal; "omit_terminator" drops it.
        return frames, Frame(json.dumps(final))

    def unary(self, body: Json, model: str) -> Json:
        """A GenerateContentResponse."""
        parts: list[Json] = [{"text": self.script.text}] if self.script.text else []
        return self._response(model, parts + self._calls(), self.script.finish or "STOP", True)
