"""Run the benchmark suite of issue 6 and write bench/results/<timestamp>.{json,md}.

    python -m bench.run --quick        # one repeat of short windows: about a minute and a half
    python -m bench.run                # three repeats of 5 s windows (medians): ~6 minutes
    python -m bench.run --only chat_c64,stream20_c64 --repeat 5
    python -m bench.run --pythonpath /tmp/before/server --label before   # another checkout
    python -m bench.run --only chat_c1,chat_c64 --baseline /tmp/before/server   # A/B

Processes: the mock upstream (bench/mock_upstream.py) and the load generator
(bench/loadgen.py) share core 1; the server (`provider-router serve --config <generated>`) and
the floor (bench/floor_server.py) run on core 0, one at a time under load. The direct-call
baseline and the floor are measured in the same run, so the results are also ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.processes import PYTHON, Cores, start_mock
from bench.procstat import machine
from bench.scenarios import (
    Bench,
    Figures,
    Server,
    Settings,
    chat_c1,
    chat_c64,
    direct_c64,
    hold_streams,
    route_1k,
    route_echo,
    stream20_c64,
    stream_ttft_c1,
    workers,
)
from bench.state import state_scenario

Scenario = Callable[[Bench, Server], Figures]
MAIN: dict[str, Scenario] = {"chat_c1": chat_c1, "stream_ttft_c1": stream_ttft_c1,
                             "chat_c64": chat_c64, "stream20_c64": stream20_c64}
ALL = (*MAIN, "floor", "direct_c64", "route_1k", "hold", "workers", "state",
       "routing_decision")
RESULTS = Path(__file__).resolve().parent / "results"


class Suite:
    """Collects every repeat of every scenario."""

    def __init__(self, bench: Bench, only: set[str]) -> None:
        self.bench = bench
        self.only = only
        self.runs: dict[str, list[Figures]] = {}
        self.routing: list[dict[str, float]] = []

    def wants(self, name: str) -> bool:
        """Whether the scenario was asked for."""
        return name in self.only

    def add(self, name: str, figures: Figures) -> None:
        """Record one repeat and say so."""
        self.runs.setdefault(name, []).append(figures)
        shown = ", ".join(f"{k}={v:.3g}" for k, v in figures.items())
        print(f"  {name}: {shown}", flush=True)

    def main_and_floor(self) -> None:
        """The four router scenarios, the floor and the bare mock, interleaved per repeat."""
        main = [n for n in MAIN if self.wants(n)]
        repeat = self.bench.settings.repeat
        if main and self.bench.settings.baseline:
            self.against_baseline(main)
        elif main:
            with self.bench.router("main") as server:
                for _ in range(repeat):
                    for name in main:
                        self.add(name, MAIN[name](self.bench, server))
        if self.wants("floor"):
            with self.bench.floor() as floor:
                for _ in range(repeat):
                    for name in ("chat_c1", "chat_c64", "stream20_c64", "stream_ttft_c1"):
                        self.add("floor_" + name, MAIN[name](self.bench, floor))
                    self.add("floor_route_1k", route_echo(self.bench, floor))
        if self.wants("direct_c64"):
            for _ in range(repeat):
                self.add("direct_c64", direct_c64(self.bench))

    def against_baseline(self, main: list[str]) -> None:
        """Each main scenario on this checkout and on the baseline, alternating per repeat,
        so drift on a shared machine hits both alike."""
        bench = self.bench
        with bench.router("main") as server, \
                bench.router("baseline", pythonpath=bench.settings.baseline) as baseline:
            for _ in range(bench.settings.repeat):
                for name in main:
                    self.add("baseline_" + name, MAIN[name](bench, baseline))
                    self.add(name, MAIN[name](bench, server))

    def others(self) -> None:
        """Route over 1,000 providers, held-open streams, workers."""
        repeat = self.bench.settings.repeat
        if self.wants("route_1k"):
            with self.bench.router("route1k", extra_providers=1000) as server:
                for _ in range(repeat):
                    self.add("route_1k", route_1k(self.bench, server))
        if self.wants("hold"):
            chunks = self.bench.settings.hold_chunks
            for _ in range(max(1, repeat // 2)):
                with self.bench.router("hold", slow_chunks=chunks) as server:
                    self.add("hold", hold_streams(self.bench, server))
        if self.wants("workers"):
            # Neither run is pinned: one worker on a core of its own against two sharing
            # both cores with the generator and the mock would compare placements, not N.
            for count in (1, 2):
                with self.bench.router(f"workers{count}", pin=False, workers=count) as server:
                    for _ in range(repeat):
                        self.add(f"workers_{count}", workers(self.bench, server))

    def state(self) -> None:
        """Chat c=64 with global limits on Redis against the same limits in memory,
        alternating per repeat (bench/state.py)."""
        if self.wants("state"):
            for name, figures in state_scenario(self.bench):
                self.add(name, figures)

    def routing_decision(self, budget_s: float) -> None:
        """bench/routing_decision.py: one decision in-process, by registry size."""
        if not self.wants("routing_decision"):
            return
        out = self.bench.settings.logs / "routing_decision.json"
        subprocess.run([PYTHON, str(Path(__file__).with_name("routing_decision.py")),
                        "--budget", str(budget_s), "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        self.routing = json.loads(out.read_text())["results"]


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("grpcio", "protobuf", "aiohttp", "uvloop"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, short windows (~1.5 min)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (medians reported)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before a window")
    parser.add_argument("--hold-streams", type=int, default=None,
                        help="streams held open (5,000; 2,000 with --quick)")
    parser.add_argument("--hold-chunks", type=int, default=None,
                        help="chunks (seconds) of each held stream (30; 12 with --quick)")
    parser.add_argument("--hold-ramp", type=float, default=None,
                        help="seconds over which they open (20; 8 with --quick)")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    parser.add_argument("--pythonpath", default="", help="run the server from this path")
    parser.add_argument("--baseline", default="", metavar="PYTHONPATH",
                        help="also run the main scenarios on the server found on this path "
                             "(e.g. a `git archive` of another commit), alternating")
    parser.add_argument("--label", default="", help="a word for the result file name")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep-logs", action="store_true", help="keep server logs and configs")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace, logs: Path) -> Settings:
    """Quick or full defaults, overridden by explicit options."""
    quick = args.quick
    return Settings(
        repeat=args.repeat or (1 if quick else 3),
        warmup_s=args.warmup if args.warmup is not None else (0.5 if quick else 1.0),
        duration_s=args.duration or (1.5 if quick else 5.0),
        hold_streams=args.hold_streams or (2000 if quick else 5000),
        hold_chunks=args.hold_chunks or (12 if quick else 30),
        hold_ramp_s=args.hold_ramp or (8.0 if quick else 20.0),
        cores=Cores.detect(not args.no_pin), logs=logs, pythonpath=args.pythonpath,
        baseline=args.baseline)


def write(args: argparse.Namespace, settings: Settings, suite: Suite, started: float) -> Path:
    """The JSON and markdown files; returns the markdown path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{args.label}" if args.label else stamp
    m = report.with_derived(report.medians(suite.runs))
    pinning = {"server": settings.cores.server or "none", "load": settings.cores.load or "none"}
    info: dict[str, Any] = {
        **machine(), **_versions(), "pinning": pinning, "repeat": settings.repeat,
        "warmup_s": settings.warmup_s, "duration_s": settings.duration_s,
        "hold_streams": settings.hold_streams, "hold_chunks": settings.hold_chunks,
        "hold_ramp_s": settings.hold_ramp_s, "pythonpath": settings.pythonpath,
        "baseline": settings.baseline, "wall_s": round(time.monotonic() - started, 1)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(
        {"info": info, "medians": m, "factors": report.factors(m), "runs": suite.runs,
         "routing_decision": suite.routing}, indent=2, default=str) + "\n")
    text = "\n\n".join(part for part in (
        f"# Benchmark {name}",
        f"{info['cpu_model']}, {info['cores']} cores; Python {info['python']}, grpcio "
        f"{info['grpcio']}, aiohttp {info['aiohttp']}, uvloop {info['uvloop']}; server pinned "
        f"to core {info['pinning']['server']}, mock and generator to core "
        f"{info['pinning']['load']}; {settings.repeat} repeat(s) of {settings.duration_s:g} s "
        f"windows, medians.",
        report.goals_table(m), report.baseline_table(m), report.details_table(m),
        report.routing_table(suite.routing))
        if part)
    path: Path = args.out_dir / f"{name}.md"
    path.write_text(text + "\n")
    print("\n" + text)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and write the report."""
    args = parse_args(argv)
    started = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = settings_from(args, logs)
    mock, port = start_mock(settings.cores, settings.logs)
    try:
        suite = Suite(Bench(settings, port, mock.pid), set(args.only.split(",")))
        suite.main_and_floor()
        suite.others()
        suite.state()
        suite.routing_decision(0.2 if args.quick else 1.0)
    except BaseException:
        print(f"failed; server and mock logs kept in {logs}", file=sys.stderr)
        raise
    finally:
        mock.stop()
    path = write(args, settings, suite, started)
    if args.keep_logs:
        print(f"logs and generated configs in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    print(f"\nwrote {path} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
