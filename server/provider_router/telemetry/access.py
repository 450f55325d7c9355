"""What every finished RPC leaves behind: its metrics and one JSON access line.

One `CallLog.finished` per RPC, called by the api layer's observer with what the call came
to (the domain answer of Chat and StreamChat, or the error's attempts). The access line is
one dict serialized by orjson and handed to a LineWriter, not a record through the logging
module: filters, a LogRecord and a formatter would cost several times the line itself on
every call. The writer's own thread writes to stderr, so a slow log reader (a full pipe)
never blocks the event loop, and lines that arrive together leave in one write.

A line never holds prompt or answer text unless `[logging] content = true`, and never an
error message (those can quote a provider's body): only the error's reason code.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import IO, TYPE_CHECKING

import orjson

from provider_router import domain as d
from provider_router.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from provider_router.telemetry.tracing import Tracing

Answer = d.ChatResponse | d.StreamEnded
"""A Chat or StreamChat call's normalized answer."""

_LIMIT_REASONS = {"RATE_LIMITED": "rate", "CONCURRENCY_LIMIT": "concurrency"}
# Skipped attempts whose reason is one of these were turned away by a local limit.


def _usage(answer: Answer) -> d.Usage:
    return answer.usage if isinstance(answer, d.StreamEnded) else answer.result.usage


class LineWriter:
    """Writes lines to a binary stream from a thread of its own, in batches.

    The event loop only appends to a deque (thread-safe, no lock, no wake-up); the thread
    wakes every `interval_s`, takes what is there and writes it in one call. Waking the
    thread per line (a queue) cost more than the write itself.
    """

    def __init__(self, stream: IO[bytes], interval_s: float = 0.1) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._lines: collections.deque[bytes] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def write(self, line: bytes) -> None:
        """Queue one line (never blocks)."""
        self._lines.append(line)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the thread (blocks: call it off the event loop)."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines = self._lines
        batch = [lines.popleft() for _ in range(len(lines))]
        if batch:
            self._stream.write(b"".join(batch))
            self._stream.flush()


class CallLog:
    """Records each finished RPC: metrics by provider and model, and the access line."""

    def __init__(self, metrics: Metrics, writer: LineWriter | None,
                 tracing: Tracing | None = None) -> None:
        self._metrics = metrics
        self._writer = writer
        self._tracing = tracing

    @property
    def logging(self) -> bool:
        """Whether access lines are written."""
        return self._writer is not None

    def close(self) -> None:
        """Write the queued lines and stop the writer (blocking: off the event loop)."""
        if self._writer is not None:
            self._writer.close()

    def finished(self, method: str, request_id: str, code: str, elapsed_s: float,
                 answer: Answer | None = None, attempts: tuple[d.Attempt, ...] = (),
                 reason: str = "", content: dict[str, object] | None = None,
                 tenant: str = "") -> None:
        """Account for one finished RPC (`answer` when it succeeded, else its `attempts`)."""
        if answer is not None:
            attempts = answer.attempts
            self._answered(method, elapsed_s, answer)
        if attempts:
            self._attempted(attempts)
        if self._tracing is not None:
            self._tracing.finished(code, answer, attempts, reason)
        if self._writer is not None:
            line = self._line(method, request_id, code, elapsed_s, answer, attempts, reason,
                              tenant)
            if content:
                line.update(content)
            self._writer.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))

    def _answered(self, method: str, elapsed_s: float, answer: Answer) -> None:
        metrics, provider, model = self._metrics, answer.provider, answer.model
        usage = _usage(answer)
        metrics.tokens.inc((provider, model, "input"), usage.prompt_tokens)
        metrics.tokens.inc((provider, model, "output"), usage.completion_tokens)
        if answer.cost_usd:
            metrics.cost_usd.inc((provider, model), answer.cost_usd)
        upstream = 0.0
        for attempt in answer.attempts:
            upstream += attempt.duration_s
        metrics.overhead_seconds.observe((method,), max(0.0, elapsed_s - upstream))
        if type(answer) is d.StreamEnded:
            metrics.ttft_seconds.observe((provider, model), answer.time_to_first_token_s)

    def _attempted(self, attempts: tuple[d.Attempt, ...]) -> None:
        metrics = self._metrics
        for attempt in attempts:
            if attempt.outcome is not d.AttemptOutcome.SKIPPED:
                metrics.upstream_seconds.observe((attempt.provider, attempt.model),
                                                 attempt.duration_s)
                continue
            limit = _LIMIT_REASONS.get(attempt.reason)
            if limit is not None:
                metrics.limiter_rejections.labels(attempt.provider, limit).inc()

    def _line(self, method: str, request_id: str, code: str, elapsed_s: float,
              answer: Answer | None, attempts: tuple[d.Attempt, ...], reason: str,
              tenant: str) -> dict[str, object]:
        line: dict[str, object] = {
            "ts": time.time(), "type": "access", "request_id": request_id,
            "trace_id": self._tracing.trace_id() if self._tracing is not None else "",
            "method": method, "tenant": tenant, "status": code,
            "latency_ms": round(elapsed_s * 1e3, 3), "attempts": len(attempts),
        }
        if answer is not None:
            usage = _usage(answer)
            line["provider"] = answer.provider
            line["model"] = answer.model
            line["input_tokens"] = usage.prompt_tokens
            line["output_tokens"] = usage.completion_tokens
            line["cost_usd"] = answer.cost_usd
            if type(answer) is d.StreamEnded:
                line["ttft_ms"] = round(answer.time_to_first_token_s * 1e3, 3)
        elif attempts:
            line["provider"] = attempts[-1].provider
            line["model"] = attempts[-1].model
        if reason:
            line["error_reason"] = reason
        return line
