"""An incremental Server-Sent Events parser, fed raw bytes as they arrive from the socket.

Follows the WHATWG event-stream rules (https://html.spec.whatwg.org/multipage/
server-sent-events.html#event-stream-interpretation): lines end in CRLF, LF or a lone CR;
`:` starts a comment; several `data:` lines join with "\\n"; a blank line dispatches.
Chunks may split anywhere, even inside a UTF-8 character or between CR and LF.

One deliberate departure: at end of input a complete-but-undispatched event is still
dispatched, because some OpenAI-compatible servers omit the blank line after
`data: [DONE]`. A truncated JSON payload still fails to parse downstream, so this never
turns a cut stream into a clean one.
"""

from __future__ import annotations

import codecs
import re
from typing import NamedTuple

_LINE_END = re.compile(r"\r\n|\r|\n")
# A line longer than this is not an LLM event; stop buffering rather than grow forever.
MAX_LINE_CHARS = 8 * 1024 * 1024


class SseOverflowError(ValueError):
    """A line grew beyond MAX_LINE_CHARS without a line break."""


class SseEvent(NamedTuple):
    """One dispatched event: its type ("message" by default), data and last event id.

    A NamedTuple, not a frozen dataclass: one is built per stream chunk, and a tuple is
    created several times faster."""

    data: str
    event: str = "message"
    id: str = ""


class SseParser:
    """Turns byte chunks into SseEvents; keeps partial lines between chunks."""

    __slots__ = ("_buffer", "_data", "_decoder", "_event", "_last_id", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse a chunk; returns the events it completed."""
        return self._consume(self._decoder.decode(chunk), final=False)

    def close(self) -> list[SseEvent]:
        """End of input: flush a final unterminated line and a pending event."""
        events = self._consume(self._decoder.decode(b"", final=True), final=True)
        self._dispatch(events)
        return events

    def _consume(self, text: str, *, final: bool) -> list[SseEvent]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            # A CR ended the previous chunk; an LF starting this one belongs to it.
            text = text.removeprefix("\n")
            self._skip_lf = False
        buffer = self._buffer + text if self._buffer else text
        events: list[SseEvent] = []
        if "\r" not in buffer:
            # The common case, LF-only framing: one C-level split instead of a regex scan.
            lines = buffer.split("\n")
            self._buffer = lines.pop()
            for line in lines:
                self._line(line, events)
        else:
            pos = 0
            for match in _LINE_END.finditer(buffer):
                self._line(buffer[pos:match.start()], events)
                pos = match.end()
            self._skip_lf = pos == len(buffer) and buffer.endswith("\r")
            self._buffer = buffer[pos:]
        if final and self._buffer:
            self._line(self._buffer, events)
            self._buffer = ""
        if len(self._buffer) > MAX_LINE_CHARS:
            raise SseOverflowError(f"SSE line longer than {MAX_LINE_CHARS} characters")
        return events

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith("data: "):  # nearly every line of an LLM stream
            self._data.append(line[6:])
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored, as the spec says.

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(SseEvent("\n".join(self._data), self._event or "message",
                                   self._last_id))
        self._data = []
        self._event = ""
