"""The hedging benchmark's pure parts: the mock's heavy tail and the generated configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.hedge import Variant, config, variants
from bench.mock_upstream import Tail, Tally, parse_tail
from provider_router.config import load_config


def test_the_tail_comes_from_the_path() -> None:
    assert parse_tail("/tail/4/5/2000/20/v1/chat/completions") == Tail(4, 5.0, 2.0, 0.02)
    assert parse_tail("/tail/4/0.5/2000/20/v1/chat/completions") == Tail(4, 0.5, 2.0, 0.02)
    assert parse_tail("/mock/4/0/v1/chat/completions") is None
    assert parse_tail("/tail/4/x/2000/20/v1/chat/completions") is None


def test_the_tail_delays_about_the_asked_share_repeatably() -> None:
    tail = Tail(4, 5.0, 2.0, 0.02)
    draws = [Tally().delay_s(tail) for _ in range(3)]
    assert draws == [draws[0]] * 3  # one seed: the same first draw every run
    tally = Tally()
    delays = [tally.delay_s(tail) for _ in range(20_000)]
    assert set(delays) == {2.0, 0.02}
    assert delays.count(2.0) / len(delays) == pytest.approx(0.05, abs=0.006)


@pytest.mark.parametrize("variant", variants(100), ids=lambda v: v.name)
def test_every_variant_config_is_valid(variant: Variant, tmp_path: Path) -> None:
    path = tmp_path / "hedge.toml"
    path.write_text(config("127.0.0.1:0", 0, 9, "4/5/2000/20", variant.hedge))
    loaded = load_config(path, {})
    assert [p.name for p in loaded.providers] == ["tail-a", "tail-b"]
    assert (loaded.routing.hedge.policy is None) == (variant.name == "off")
