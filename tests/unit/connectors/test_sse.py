"""The SSE parser: framing rules, and robustness to arbitrary chunk boundaries."""

from __future__ import annotations

import random

import pytest

from provider_router.connectors.sse import SseEvent, SseOverflowError, SseParser

STREAM = (
    b": comment to ignore\n"
    b"event: message_start\n"
    b"data: {\"a\": 1}\n\n"
    b"id: 7\r\n"
    b"data: line one\r\n"
    b"data: line two\r\n\r\n"
    b"retry: 100\r"
    b"data: caf\xc3\xa9 \xe2\x82\xac\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SseEvent('{"a": 1}', "message_start", ""),
    SseEvent("line one\nline two", "message", "7"),
    SseEvent("caf\u00e9 \u20ac", "message", "7"),
    SseEvent("[DONE]", "message", "7"),
]


def parse_in_pieces(data: bytes, cuts: list[int]) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    start = 0
    for cut in [*cuts, len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    return events + parser.close()


def test_whole_stream_parses_per_spec() -> None:
    assert parse_in_pieces(STREAM, []) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_single_split_point_gives_the_same_events(cut: int) -> None:
    # Covers splits inside CRLF, inside a multi-byte UTF-8 character and inside field names.
    assert parse_in_pieces(STREAM, [cut]) == EXPECTED


def test_byte_by_byte_and_random_splits() -> None:
    assert parse_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED
    rng = random.Random(42)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        assert parse_in_pieces(STREAM, cuts) == EXPECTED


def test_field_without_space_and_unknown_fields() -> None:
    events = parse_in_pieces(b"data:x\nfoo: bar\ndata\n\n", [])
    assert events == [SseEvent("x\n")]


def test_blank_lines_alone_dispatch_nothing_and_event_type_resets() -> None:
    events = parse_in_pieces(b"\n\nevent: ping\n\ndata: after\n\n", [])
    # An event with no data is not dispatched, and its type does not leak into the next.
    assert events == [SseEvent("after", "message")]


def test_leading_bom_is_ignored() -> None:
    assert parse_in_pieces(b"\xef\xbb\xbfdata: x\n\n", [2]) == [SseEvent("x")]


def test_end_of_input_flushes_a_complete_event_without_blank_line() -> None:
    assert parse_in_pieces(b"data: [DONE]", []) == [SseEvent("[DONE]")]
    assert parse_in_pieces(b"data: [DONE]\n", []) == [SseEvent("[DONE]")]


def test_overlong_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("provider_router.connectors.sse.MAX_LINE_CHARS", 10)
    parser = SseParser()
    with pytest.raises(SseOverflowError):
        parser.feed(b"data: " + b"x" * 20)
