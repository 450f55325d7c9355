"""CachedAnswer ↔ bytes (compact JSON), the one format every backend stores."""

from __future__ import annotations

import json

from provider_router import domain as d
from provider_router.cache.base import CachedAnswer

FORMAT = 1
"""Bumped when the stored shape changes; entries of another format read as misses."""


def encode(answer: CachedAnswer) -> bytes:
    """The stored form of an answer."""
    usage = answer.usage
    return json.dumps({
        "v": FORMAT, "provider": answer.provider, "model": answer.model,
        "target_model": answer.target_model, "chunks": list(answer.chunks),
        "finish": answer.finish_reason.value,
        "usage": [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
                  usage.estimated],
        "tools": [[c.id, c.name, c.arguments_json] for c in answer.tool_calls],
        "id": answer.response_id, "cost": answer.cost_usd,
    }, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> CachedAnswer | None:
    """The answer stored in `data`; None for another format or a damaged entry (a miss)."""
    try:
        raw = json.loads(data)
        if raw.get("v") != FORMAT:
            return None
        prompt, completion, total, estimated = raw["usage"]
        return CachedAnswer(
            provider=raw["provider"], model=raw["model"], target_model=raw["target_model"],
            chunks=tuple(raw["chunks"]), finish_reason=d.FinishReason(raw["finish"]),
            usage=d.Usage(prompt, completion, total, estimated),
            tool_calls=tuple(d.ToolCall(i, n, a) for i, n, a in raw["tools"]),
            response_id=raw["id"], cost_usd=raw["cost"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
