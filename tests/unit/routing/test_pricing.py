"""Prices: exact costs, and None, never a guess, when a needed price is unknown."""

from __future__ import annotations

import pytest

from provider_router.domain import GenerationParams, ModelSpec, Usage
from provider_router.routing.pricing import (
    cost_usd,
    expected_completion_tokens,
    expected_cost_usd,
)

PRICED = ModelSpec("m", input_per_mtok=3.0, output_per_mtok=15.0)


@pytest.mark.parametrize(("model", "usage", "expected"), [
    (PRICED, Usage(1_000_000, 0), 3.0),
    (PRICED, Usage(2000, 1000), 2000 * 3.0 / 1e6 + 1000 * 15.0 / 1e6),
    (PRICED, Usage(0, 0), 0.0),
    (ModelSpec("m", input_per_mtok=1.0), Usage(100, 0), 100 / 1e6),  # output price not needed
    (ModelSpec("m", input_per_mtok=1.0), Usage(100, 1), None),
    (ModelSpec("m"), Usage(100, 100), None),
    (None, Usage(100, 100), None),
])
def test_cost(model: ModelSpec | None, usage: Usage, expected: float | None) -> None:
    found = cost_usd(model, usage)
    assert found == (pytest.approx(expected) if expected is not None else None)


def test_expected_cost_and_completion_size() -> None:
    assert expected_cost_usd(PRICED, 1000, 100) == pytest.approx(0.003 + 0.0015)
    assert expected_completion_tokens(GenerationParams(max_tokens=50), 256) == 50
    assert expected_completion_tokens(GenerationParams(), 256) == 256
