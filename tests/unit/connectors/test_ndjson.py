"""The NDJSON splitter."""

from __future__ import annotations

import pytest

from provider_router.connectors.ndjson import NdjsonOverflowError, NdjsonSplitter

BODY = '{"a": 1}\r\n\n{"b": "\u00e9"}\n{"c": 3}'.encode()


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_lines_survive_any_split(cut: int) -> None:
    splitter = NdjsonSplitter()
    lines = splitter.feed(BODY[:cut]) + splitter.feed(BODY[cut:]) + splitter.close()
    assert lines == ['{"a": 1}', '{"b": "\u00e9"}', '{"c": 3}']


def test_close_without_pending_line_returns_nothing() -> None:
    splitter = NdjsonSplitter()
    assert splitter.feed(b"{}\n") == ["{}"]
    assert splitter.close() == []


def test_overlong_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("provider_router.connectors.ndjson.MAX_LINE_CHARS", 4)
    with pytest.raises(NdjsonOverflowError):
        NdjsonSplitter().feed(b"123456789")
