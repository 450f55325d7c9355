"""The measurement window of one load run: warm-up, then a bounded, recorded window.

Workers call `record` after every call; only calls that complete inside the window count.
At the window's edges the CPU and memory of the watched processes are read from /proc, so
CPU per request is (CPU at end - CPU at start) / requests completed in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from bench import procstat


@dataclass(frozen=True, slots=True)
class Watched:
    """A process whose CPU is measured: a name, a pid, and whether to count its children."""

    name: str
    pid: int
    tree: bool = False

    @classmethod
    def parse(cls, text: str) -> Watched:
        """`name=pid` or `name=pid+` (with descendants)."""
        name, _, pid = text.partition("=")
        return cls(name, int(pid.rstrip("+")), pid.endswith("+"))


def _samples(watched: list[Watched]) -> dict[str, procstat.ProcSample]:
    found: dict[str, procstat.ProcSample] = {}
    for w in watched:
        try:
            found[w.name] = procstat.sample(w.pid, include_children=w.tree)
        except OSError:
            continue
    return found


@dataclass
class Recorder:
    """Collects one window's latencies, errors and process figures."""

    watched: list[Watched]
    max_requests: int
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    recording: bool = False
    stopping: bool = False
    started_at: float = 0.0
    ended_at: float = 0.0
    before: dict[str, procstat.ProcSample] = field(default_factory=dict)
    after: dict[str, procstat.ProcSample] = field(default_factory=dict)
    full: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, latency: float, ttft: float | None, error: str | None) -> None:
        """One finished call (counted only inside the window)."""
        if not self.recording:
            return
        if error is not None:
            self.errors[error] += 1
        else:
            self.latencies.append(latency)
            if ttft is not None:
                self.ttfts.append(ttft)
        if len(self.latencies) + self.errors.total() >= self.max_requests:
            self.full.set()

    def open(self) -> None:
        """Start the window."""
        self.before = _samples(self.watched)
        self.before["generator"] = procstat.sample(os.getpid())
        self.started_at = time.perf_counter()
        self.recording = True

    def close(self) -> None:
        """End the window."""
        self.recording = False
        self.ended_at = time.perf_counter()
        self.after = _samples(self.watched)
        self.after["generator"] = procstat.sample(os.getpid())

    @property
    def seconds(self) -> float:
        """The window's length."""
        return self.ended_at - self.started_at

    def cpu(self) -> dict[str, float]:
        """CPU seconds each watched process (and the generator) spent in the window."""
        return {name: self.after[name].cpu_s - self.before[name].cpu_s
                for name in self.after if name in self.before}

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak RSS (VmHWM) of each watched process at the end of the window."""
        return {name: sample.peak_rss_mb for name, sample in self.after.items()}


async def run_window(recorder: Recorder, warmup_s: float, duration_s: float) -> None:
    """Warm up, then record until the duration passes or enough calls completed."""
    await asyncio.sleep(warmup_s)
    recorder.open()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(recorder.full.wait(), timeout=duration_s)
    recorder.close()
    recorder.stopping = True
