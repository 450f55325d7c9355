"""The load generator: fixed concurrency, warm-up, a bounded window; one JSON line out.

Modes: `chat`, `stream`, `route` (through the router over gRPC), `direct-chat`,
`direct-stream` (aiohttp straight to the mock: the baseline), and `hold` (open N streams
against a slow upstream and keep them open until they end).

Usage: python -m bench.loadgen chat --target 127.0.0.1:50051 --concurrency 64 \
           --warmup 1 --duration 5 --watch server=1234+ --watch mock=1240
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench import procstat
from bench.calls import Call, DirectCalls, GrpcCalls, classify
from bench.loop_lag import LagSnapshot, scrape
from bench.recorder import Recorder, Watched, run_window
from bench.stats import per_request_ms, rate, summary_ms

GRPC_MODES = ("chat", "stream", "route", "hold")
DIRECT_MODES = ("direct-chat", "direct-stream")


@dataclass(frozen=True, slots=True)
class Options:
    """What to run and for how long."""

    mode: str
    target: str
    url: str
    model: str
    concurrency: int
    channels: int
    warmup_s: float
    duration_s: float
    max_requests: int
    deadline_s: float
    ramp_s: float
    metrics_url: str
    watched: tuple[Watched, ...]


async def _worker(call: Call, index: int, recorder: Recorder) -> None:
    while not recorder.stopping:
        started = time.perf_counter()
        error: str | None = None
        ttft: float | None = None
        try:
            ttft = await call(index)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is counted, none stops the run
            error = classify(exc)
        recorder.record(time.perf_counter() - started, ttft, error)


async def closed_loop(call: Call, options: Options, recorder: Recorder) -> None:
    """`concurrency` workers, each calling back to back, around one window."""
    workers = [asyncio.create_task(_worker(call, i, recorder))
               for i in range(options.concurrency)]
    try:
        await run_window(recorder, options.warmup_s, options.duration_s)
        await asyncio.wait(workers, timeout=options.deadline_s)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _one_hold(call: Call, index: int, recorder: Recorder) -> None:
    started = time.perf_counter()
    try:
        ttft = await call(index)
    except Exception as exc:  # counted below, the others keep going
        recorder.record(time.perf_counter() - started, None, classify(exc))
        return
    recorder.record(time.perf_counter() - started, ttft, None)


async def _ramp(call: Call, options: Options, recorder: Recorder) -> list[asyncio.Task[None]]:
    batch = 50
    pause = options.ramp_s * batch / max(1, options.concurrency)
    tasks: list[asyncio.Task[None]] = []
    for index in range(options.concurrency):
        tasks.append(asyncio.create_task(_one_hold(call, index, recorder)))
        if index % batch == batch - 1:
            await asyncio.sleep(pause)
    return tasks


async def hold(calls: GrpcCalls, options: Options, recorder: Recorder) -> dict[str, object]:
    """Open `concurrency` streams over `ramp_s` seconds, wait until all are open, then until
    all end. The loop lag is read for the ramp and for the time they are all open."""
    at_start = await _lag(options.metrics_url)
    calls.expected = options.concurrency
    recorder.open()
    tasks = await _ramp(calls.stream, options, recorder)
    ramped = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(calls.all_settled.wait(), timeout=max(5.0, options.ramp_s))
    all_open = calls.opened
    at_open = await _lag(options.metrics_url)
    await asyncio.wait(tasks, timeout=options.duration_s + options.deadline_s)
    recorder.close()
    at_end = await _lag(options.metrics_url)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result: dict[str, object] = {"open_peak": calls.open_peak, "open_after_ramp": all_open,
                                 "ramp_s": round(ramped - recorder.started_at, 2)}
    if at_start is not None and at_open is not None and at_end is not None:
        result["loop_lag_ramp"] = at_open.since(at_start)
        result["loop_lag_open"] = at_end.since(at_open)
    return result


def _calls(options: Options) -> tuple[Call, Callable[[], Awaitable[None]], GrpcCalls | None]:
    if options.mode in DIRECT_MODES:
        direct = DirectCalls(options.url, options.concurrency, options.model)
        chosen = direct.chat if options.mode == "direct-chat" else direct.stream
        return chosen, direct.aclose, None
    grpc_calls = GrpcCalls(options.target, options.channels, options.model, options.deadline_s)
    by_mode: dict[str, Call] = {"chat": grpc_calls.chat, "route": grpc_calls.route,
                                "stream": grpc_calls.stream, "hold": grpc_calls.stream}
    return by_mode[options.mode], grpc_calls.aclose, grpc_calls


async def run(options: Options) -> dict[str, object]:
    """Run one mode and return its figures."""
    recorder = Recorder(list(options.watched), options.max_requests)
    call, aclose, grpc_calls = _calls(options)
    extra: dict[str, object] = {}
    lag_before = await _lag(options.metrics_url)
    try:
        if options.mode == "hold" and grpc_calls is not None:
            extra = await hold(grpc_calls, options, recorder)
        else:
            await closed_loop(call, options, recorder)
    finally:
        await aclose()
    lag_after = await _lag(options.metrics_url)
    result = {**report(options, recorder), **extra}
    if lag_before is not None and lag_after is not None:
        result["loop_lag"] = lag_after.since(lag_before)
    return result


async def _lag(url: str) -> LagSnapshot | None:
    if not url:
        return None
    with contextlib.suppress(OSError, ValueError):
        return await scrape(url)
    return None


def report(options: Options, recorder: Recorder) -> dict[str, object]:
    """The window's figures as plain JSON values."""
    done = len(recorder.latencies)
    cpu = recorder.cpu()
    return {
        "mode": options.mode, "concurrency": options.concurrency, "model": options.model,
        "seconds": round(recorder.seconds, 3), "requests": done,
        "errors": dict(recorder.errors), "error_count": recorder.errors.total(),
        "rps": round(rate(done, recorder.seconds), 1),
        "latency_ms": _rounded(summary_ms(recorder.latencies)),
        "ttft_ms": _rounded(summary_ms(recorder.ttfts)),
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_ms_per_request": {k: round(per_request_ms(v, done), 4) for k, v in cpu.items()},
        "cpu_util": {k: round(v / recorder.seconds, 3) if recorder.seconds else 0.0
                     for k, v in cpu.items()},
        "peak_rss_mb": {k: round(v, 1) for k, v in recorder.peak_rss_mb().items()},
    }


def _rounded(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else round(v, 4)) for k, v in values.items()}


def parse_args(argv: list[str] | None = None) -> Options:
    """Command line → Options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=GRPC_MODES + DIRECT_MODES)
    parser.add_argument("--target", default="127.0.0.1:50051", help="router HOST:PORT")
    parser.add_argument("--url", default="", help="mock chat URL for the direct modes")
    parser.add_argument("--model", default="bench-fast")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--channels", type=int, default=1, help="gRPC connections")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before recording")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds recorded at most")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--deadline", type=float, default=60.0, help="per-call deadline")
    parser.add_argument("--ramp", type=float, default=2.0, help="hold: seconds to open all")
    parser.add_argument("--metrics-url", default="", help="server /metrics, for loop lag")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID[+]",
                        help="a process whose CPU to read (+ counts its children)")
    a = parser.parse_args(argv)
    return Options(a.mode, a.target, a.url, a.model, a.concurrency, a.channels, a.warmup,
                   a.duration, a.max_requests, a.deadline, a.ramp, a.metrics_url,
                   tuple(Watched.parse(w) for w in a.watch))


def main(argv: list[str] | None = None) -> int:
    """Run and print one JSON line."""
    options = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(options))
    else:
        result = uvloop.run(run(options))
    result["machine"] = procstat.machine()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
