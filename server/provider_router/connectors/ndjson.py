"""An incremental newline-delimited JSON splitter (Ollama's streaming framing).

Yields complete lines only; a line split across socket reads, or inside a UTF-8 character,
is held until its newline arrives. Blank lines are skipped and CRLF is accepted.
"""

from __future__ import annotations

import codecs

# A line longer than this is not one chat chunk; stop buffering rather than grow forever.
MAX_LINE_CHARS = 8 * 1024 * 1024


class NdjsonOverflowError(ValueError):
    """A line grew beyond MAX_LINE_CHARS without a newline."""


class NdjsonSplitter:
    """Turns byte chunks into complete text lines."""

    __slots__ = ("_buffer", "_decoder")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""

    def feed(self, chunk: bytes) -> list[str]:
        """Split a chunk; returns the lines it completed."""
        buffer = self._buffer + self._decoder.decode(chunk)
        *lines, self._buffer = buffer.split("\n")
        if len(self._buffer) > MAX_LINE_CHARS:
            raise NdjsonOverflowError(f"NDJSON line longer than {MAX_LINE_CHARS} characters")
        return [line.strip() for line in lines if line.strip()]

    def close(self) -> list[str]:
        """End of input: the final line, if it lacked its newline."""
        rest = (self._buffer + self._decoder.decode(b"", final=True)).strip()
        self._buffer = ""
        return [rest] if rest else []
