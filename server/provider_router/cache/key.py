"""The cache key: sha256 over a canonical JSON serialization of what decides the answer.

In the key: the scope (tenant), the model as requested and the resolved target (so that
re-pointing an alias at another provider or model never serves the old model's answers),
the messages, the sampling parameters, the tools, the tool choice and the response format.
Not in it: metadata (logs only), routing preferences (they matter only through the target),
and whether the call streams (a unary answer replays as a stream and vice versa).
"""

from __future__ import annotations

import hashlib
import json

from provider_router import domain as d

KEY_VERSION = 1
"""Bumped whenever the serialization changes, so old entries simply miss."""


def cache_scope(request: d.ChatRequest) -> str:
    """Who may share cached answers: the tenant the caller authenticated as (set by the api
    layer from the API key, never from anything the caller wrote). Without tenants every
    caller shares the one unscoped cache."""
    return request.tenant


def _part(part: d.ContentPart) -> object:
    if isinstance(part, d.TextPart):
        return ["text", part.text]
    # Inline images by digest: the key stays small and the bytes still decide it.
    data = hashlib.sha256(part.data).hexdigest() if part.data else ""
    return ["image", part.url, data, part.mime_type]


def _message(m: d.ChatMessage) -> object:
    return [m.role.value, m.content, [_part(p) for p in m.parts],
            [[c.id, c.name, c.arguments_json] for c in m.tool_calls], m.tool_call_id, m.name]


def _canonical(request: d.ChatRequest, target: d.RouteTarget, scope: str) -> bytes:
    p = request.params
    choice = request.tool_choice
    fmt = request.response_format
    document = {
        "v": KEY_VERSION,
        "scope": scope,
        "model": request.routing.model,
        "target": [target.provider, target.model],
        "messages": [_message(m) for m in request.messages],
        "params": [p.temperature, p.top_p, p.max_tokens, list(p.stop), p.seed],
        "tools": [[t.name, t.description, t.parameters] for t in request.tools],
        "tool_choice": None if choice is None else [choice.mode.value, choice.name],
        "format": None if fmt is None else [fmt.type.value, fmt.json_schema, fmt.schema_name],
    }
    # sort_keys orders JSON schema objects too; compact separators leave no whitespace.
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def cache_key(request: d.ChatRequest, target: d.RouteTarget, scope: str) -> str:
    """The hex sha256 of the request's canonical form, answered by `target`, in `scope`."""
    return hashlib.sha256(_canonical(request, target, scope)).hexdigest()
