"""What the cache may serve and store: pure functions of the request, answer and settings.

- A request's mode is its own (`RoutingOptions.cache`) or the configured one.
- A sampled request (temperature unset, which every supported provider defaults to a value
  above 0, or above 0) bypasses the cache unless `[cache] sampled` or the request's
  `cache_sampled` says otherwise: a cached sample would make every later answer the same.
- Only complete answers are stored: never errors (they never reach the cache), never a
  stream that broke or was cut (only an ended stream is stored), never a finish reason of
  `error`, never tool calls unless `[cache] tool_calls` (an agent loop replaying a cached
  call would run the tool again under a call id meant to be unique), never an entry larger
  than `max_entry_bytes`.
"""

from __future__ import annotations

from provider_router import domain as d
from provider_router.cache.base import CachedAnswer
from provider_router.cache.settings import CacheSettings


def request_mode(request: d.ChatRequest, settings: CacheSettings) -> d.CacheMode:
    """The mode that applies to the request."""
    mode = request.routing.cache
    return settings.mode if mode is None else mode


def sampled(request: d.ChatRequest) -> bool:
    """Whether the answer is a random sample: temperature unset or above 0."""
    temperature = request.params.temperature
    return temperature is None or temperature > 0


def request_refusal(request: d.ChatRequest, settings: CacheSettings) -> str:
    """Why the request bypasses the cache ("" when it may use it)."""
    if sampled(request) and not (settings.sampled or request.routing.cache_sampled):
        return "sampled"
    return ""


def answer_refusal(answer: CachedAnswer, size: int, settings: CacheSettings) -> str:
    """Why a complete answer is not stored ("" when it is)."""
    if answer.finish_reason is d.FinishReason.ERROR:
        return "finish_error"
    if answer.tool_calls and not settings.tool_calls:
        return "tool_calls"
    if size > settings.max_entry_bytes:
        return "too_large"
    return ""


def ttl_s(request: d.ChatRequest, settings: CacheSettings) -> float:
    """How long the request's answer stays cached."""
    ttl = request.routing.cache_ttl_s
    return settings.ttl_s if ttl is None else ttl
