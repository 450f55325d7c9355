"""The scenarios of issue 6, each a function of a running server → flat figures for one repeat.

Every scenario runs the load generator as its own process (pinned next to the mock), so the
CPU each process spends is read separately from /proc. Figures are flat `name → number`
dicts so repeats reduce to medians key by key.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import configs
from bench.processes import (
    Cores,
    floor_argv,
    free_port,
    router_argv,
    run_loadgen,
    serving,
)
from bench.procstat import pin_prefix

Figures = dict[str, float]


@dataclass(frozen=True, slots=True)
class Settings:
    """How long and how hard to run."""

    repeat: int
    warmup_s: float
    duration_s: float
    hold_streams: int
    hold_chunks: int
    hold_ramp_s: float
    cores: Cores
    logs: Path
    pythonpath: str = ""
    baseline: str = ""


@dataclass(frozen=True, slots=True)
class Server:
    """A running server under test."""

    name: str
    target: str
    metrics_url: str
    pid: int


class Bench:
    """Starts servers against the shared mock and runs the load generator at them."""

    def __init__(self, settings: Settings, mock_port: int, mock_pid: int) -> None:
        self.settings = settings
        self.mock_port = mock_port
        self.mock_pid = mock_pid

    @contextlib.contextmanager
    def router(self, name: str, pythonpath: str | None = None, *, pin: bool = True,
               **shape: Any) -> Iterator[Server]:
        """`provider-router serve --config <generated>` for the duration of the block; one
        worker is pinned to the server core unless `pin` is off (several never are)."""
        port, metrics = free_port(), free_port()
        config = self.settings.logs / f"{name}.toml"
        config.write_text(configs.server_config(configs.ServerShape(
            listen=f"127.0.0.1:{port}", metrics_port=metrics, mock_port=self.mock_port,
            **shape)))
        workers = int(shape.get("workers", 1))
        cores = self.settings.cores.server if workers == 1 and pin else ""
        path = self.settings.pythonpath if pythonpath is None else pythonpath
        target = f"127.0.0.1:{port}"
        argv = [*pin_prefix(cores), *router_argv(config, workers)]
        with serving(argv, target, self.settings.logs / f"server-{name}.log", path) as process:
            yield Server(name, target,
                         f"http://127.0.0.1:{metrics}/metrics" if workers == 1 else "",
                         process.pid)

    @contextlib.contextmanager
    def floor(self) -> Iterator[Server]:
        """The minimal grpc.aio → aiohttp proxy (bench/floor_server.py)."""
        target = f"127.0.0.1:{free_port()}"
        argv = [*pin_prefix(self.settings.cores.server), *floor_argv(target, self.mock_port)]
        with serving(argv, target, self.settings.logs / "server-floor.log",
                     timeout=30) as process:
            yield Server("floor", target, "", process.pid)

    def load(self, mode: str, server: Server | None, *, concurrency: int,
             model: str = configs.FAST, url_path: str = "/v1/chat/completions",
             channels: int = 1, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """One load-generator run; its JSON result."""
        s = self.settings
        args = [mode, "--concurrency", str(concurrency), "--model", model,
                "--warmup", str(s.warmup_s), "--duration", str(s.duration_s),
                "--channels", str(channels), "--watch", f"mock={self.mock_pid}",
                "--url", f"http://127.0.0.1:{self.mock_port}{url_path}", *extra]
        if server is not None:
            args += ["--target", server.target, "--watch", f"server={server.pid}+"]
            if server.metrics_url:
                args += ["--metrics-url", server.metrics_url]
        return run_loadgen(args, s.cores.load, timeout=s.warmup_s + s.duration_s + 300)


def _num(result: dict[str, Any], *path: str) -> float:
    value: Any = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else math.nan


def chat_c1(bench: Bench, server: Server) -> Figures:
    """Chat at concurrency 1: the router's p50 over a direct call to the same mock."""
    direct = bench.load("direct-chat", None, concurrency=1)
    routed = bench.load("chat", server, concurrency=1)
    return {"direct_p50_ms": _num(direct, "latency_ms", "p50"),
            "p50_ms": _num(routed, "latency_ms", "p50"),
            "p99_ms": _num(routed, "latency_ms", "p99"),
            "added_p50_ms": _num(routed, "latency_ms", "p50") - _num(direct, "latency_ms", "p50"),
            "server_cpu_ms_per_req": _num(routed, "cpu_ms_per_request", "server"),
            "errors": _num(routed, "error_count")}


def stream_ttft_c1(bench: Bench, server: Server) -> Figures:
    """StreamChat at concurrency 1: time to first token over a direct streamed call."""
    direct = bench.load("direct-stream", None, concurrency=1)
    routed = bench.load("stream", server, concurrency=1)
    return {"direct_ttft_p50_ms": _num(direct, "ttft_ms", "p50"),
            "ttft_p50_ms": _num(routed, "ttft_ms", "p50"),
            "ttft_p99_ms": _num(routed, "ttft_ms", "p99"),
            "added_ttft_p50_ms": _num(routed, "ttft_ms", "p50") - _num(direct, "ttft_ms", "p50"),
            "errors": _num(routed, "error_count")}


def _throughput(result: dict[str, Any]) -> Figures:
    return {"per_s": _num(result, "rps"),
            "server_cpu_ms_per_req": _num(result, "cpu_ms_per_request", "server"),
            "p50_ms": _num(result, "latency_ms", "p50"),
            "p99_ms": _num(result, "latency_ms", "p99"),
            "server_cpu_util": _num(result, "cpu_util", "server"),
            "mock_cpu_util": _num(result, "cpu_util", "mock"),
            "generator_cpu_util": _num(result, "cpu_util", "generator"),
            "errors": _num(result, "error_count")}


def chat_c64(bench: Bench, server: Server) -> Figures:
    """Chat at concurrency 64: requests/s and the server's CPU per request."""
    return _throughput(bench.load("chat", server, concurrency=64))


def direct_c64(bench: Bench) -> Figures:
    """The mock alone at concurrency 64 (shows the mock is never the bottleneck)."""
    result = bench.load("direct-chat", None, concurrency=64)
    return {"per_s": _num(result, "rps"),
            "mock_cpu_ms_per_req": _num(result, "cpu_ms_per_request", "mock"),
            "mock_cpu_util": _num(result, "cpu_util", "mock")}


def stream20_c64(bench: Bench, server: Server) -> Figures:
    """StreamChat of 20 chunks at concurrency 64: streams/s."""
    result = bench.load("stream", server, concurrency=64, model=configs.CHUNKY)
    return {**_throughput(result), "ttft_p50_ms": _num(result, "ttft_ms", "p50")}


def route_1k(bench: Bench, server: Server) -> Figures:
    """Route over 1,000 registered providers: a model one serves, and one all serve."""
    own = _throughput(bench.load("route", server, concurrency=64, model="bench-own-500"))
    shared = _throughput(bench.load("route", server, concurrency=16, model=configs.SHARED))
    return {**own, **{f"shared_{k}": v for k, v in shared.items()}}


def route_echo(bench: Bench, server: Server) -> Figures:
    """Route against the floor server: the bare gRPC unary cost, nothing decided."""
    return _throughput(bench.load("route", server, concurrency=64, model="bench-own-500"))


def hold_streams(bench: Bench, server: Server) -> Figures:
    """N StreamChat calls held open against a slow upstream (one chunk a second).

    They open over `hold_ramp_s` seconds (a server that takes ~1.5 ms of CPU to start a
    stream cannot accept 5,000 in two seconds without queueing), then stay open together
    until the upstream's chunks run out. Loop lag is read for the ramp and for the time
    they are all open.
    """
    s = bench.settings
    result = bench.load("hold", server, concurrency=s.hold_streams, model=configs.SLOW,
                        channels=max(1, s.hold_streams // 500),
                        extra=("--ramp", str(s.hold_ramp_s)))
    if result.get("errors"):
        print(f"  hold: errors by kind {result['errors']}", flush=True)
    figures = {"streams": float(s.hold_streams), "completed": _num(result, "requests"),
               "open_peak": _num(result, "open_peak"),
               "open_after_ramp": _num(result, "open_after_ramp"),
               "ramp_s": _num(result, "ramp_s"), "errors": _num(result, "error_count"),
               "peak_rss_mb": _num(result, "peak_rss_mb", "server"),
               "server_cpu_util": _num(result, "cpu_util", "server"),
               "seconds": _num(result, "seconds")}
    for window in ("ramp", "open"):
        key = f"loop_lag_{window}"
        figures[f"{window}_loop_stalls_over_50ms"] = _num(result, key, "stalls")
        figures[f"{window}_loop_lag_max_gt_ms"] = _num(result, key, "max_gt_ms")
        figures[f"{window}_loop_lag_max_le_ms"] = _num(result, key, "max_le_ms")
    return figures


def workers(bench: Bench, server: Server) -> Figures:
    """Chat at concurrency 64 over 16 connections (spread by SO_REUSEPORT)."""
    return _throughput(bench.load("chat", server, concurrency=64, channels=16))
