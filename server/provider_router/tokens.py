"""Token estimates for when a provider reports no usage, and for routing before a call."""

from __future__ import annotations

from collections.abc import Iterable

from provider_router.domain import ChatMessage

# About four characters per token for English text with BPE tokenizers; an estimate is
# always flagged as such (Usage.estimated), never passed off as a provider's count.
_CHARS_PER_TOKEN = 4
# Role markers and separators each message costs in chat formats.
_PER_MESSAGE_OVERHEAD = 4


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of a piece of text (at least 1 for non-empty text)."""
    if not text:
        return 0
    return max(1, (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Iterable[ChatMessage]) -> int:
    """Estimated prompt tokens of a conversation."""
    total = 0
    for message in messages:
        total += _PER_MESSAGE_OVERHEAD + estimate_text_tokens(message.text())
        for call in message.tool_calls:
            total += estimate_text_tokens(call.name) + estimate_text_tokens(call.arguments_json)
    return total
