"""Prices: the cost of an answer, and the expected cost of a request before it is sent.

An unknown price gives None, never a made-up number: a caller who sees a cost can trust it.
"""

from __future__ import annotations

from provider_router.domain import GenerationParams, ModelSpec, Usage

_PER_MTOK = 1_000_000.0


def _part(tokens: int, per_mtok: float | None) -> float | None:
    # A price is only needed for tokens that were actually spent.
    if tokens <= 0:
        return 0.0
    if per_mtok is None:
        return None
    return tokens * per_mtok / _PER_MTOK


def expected_cost_usd(model: ModelSpec | None, prompt_tokens: int,
                      completion_tokens: int) -> float | None:
    """USD for that many prompt and completion tokens; None when a needed price is unknown."""
    if model is None:
        return None
    prompt = _part(prompt_tokens, model.input_per_mtok)
    completion = _part(completion_tokens, model.output_per_mtok)
    if prompt is None or completion is None:
        return None
    return prompt + completion


def cost_usd(model: ModelSpec | None, usage: Usage) -> float | None:
    """USD an answer cost; None when a price it needs is unknown."""
    return expected_cost_usd(model, usage.prompt_tokens, usage.completion_tokens)


def expected_completion_tokens(params: GenerationParams, default: int) -> int:
    """The completion size to price a request at: max_tokens when set, else `default`."""
    return params.max_tokens if params.max_tokens is not None else default
