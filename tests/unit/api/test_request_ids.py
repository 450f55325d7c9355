"""Request ids: the caller's own, else unique generated ones."""

from __future__ import annotations

from typing import Any

from provider_router.api.interceptors import RequestIds


class _Context:
    def __init__(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata


def test_the_callers_id_is_kept() -> None:
    ids = RequestIds()
    assert ids(_Context((("x-request-id", "abc-123"),))) == "abc-123"  # type: ignore[arg-type]


def test_unusable_caller_ids_are_replaced() -> None:
    ids = RequestIds()
    for value in ("", "x" * 129, b"bytes"):
        generated = ids(_Context((("x-request-id", value),)))  # type: ignore[arg-type]
        assert generated != value and len(generated) == 32


def test_generated_ids_are_unique_hex_and_differ_between_instances() -> None:
    first, second = RequestIds(), RequestIds()
    made = [first(_Context(())) for _ in range(1000)]  # type: ignore[arg-type]
    assert len(set(made)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert second(_Context(()))[:16] != made[0][:16]  # type: ignore[arg-type]
