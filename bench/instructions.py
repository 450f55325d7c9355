"""Instructions per call, counted by valgrind's callgrind: a CPU figure that noise cannot move.

    python -m bench.instructions                       # chat, stream20, route on the router
    python -m bench.instructions --floor               # the same calls on the floor server
    python -m bench.instructions --baseline /tmp/before/server   # A/B against another tree
    python -m bench.instructions --only chat --calls 1000

On a shared VM the seconds of CPU a call takes move by ±25 % from run to run, which hides a
5 % change. Callgrind counts instructions instead: the same code, inputs and environment give
the same count whatever else the machine does. The server runs under callgrind with
instrumentation off (start-up is only translated, not counted); after a warm-up the count is
switched on for exactly `--calls` calls at a fixed concurrency and dumped. Every thread of
the server is counted (gRPC's too). The count includes the little background work (probes,
loop-lag timer) done meanwhile, the same for both sides of an A/B.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import configs
from bench.calls import GrpcCalls
from bench.processes import (
    Cores,
    Process,
    floor_argv,
    free_port,
    router_argv,
    serving,
    start_mock,
)

CALLS: dict[str, tuple[str, str]] = {
    # name: (GrpcCalls method, model)
    "chat": ("chat", configs.FAST),
    "stream20": ("stream", configs.CHUNKY),
    "route": ("route", configs.FAST),
}
_TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)


def instructions_in(dump: str) -> int:
    """The instruction count of one callgrind dump (its `totals:` line; the `summary:` line
    of the header says the same)."""
    return sum(int(m.group(1)) for m in _TOTALS.finditer(dump))


def markdown_table(sides: dict[str, dict[str, float]], names: list[str], unit: str,
                   shown: Callable[[float], str]) -> str:
    """Calls by row, sides (this tree, a baseline, the floor) by column."""
    lines = ["| call | " + " | ".join(f"{side} ({unit})" for side in sides) + " |",
             "|---|" + "---|" * len(sides)]
    lines.extend(f"| {name} | " + " | ".join(shown(sides[side][name]) for side in sides) + " |"
                 for name in names)
    return "\n".join(lines)


def _callgrind(out: Path) -> list[str]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    return [valgrind, "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
            "--compress-strings=no", f"--callgrind-out-file={out}/callgrind.%p"]


@contextmanager
def _server(floor: bool, pythonpath: str, mock_port: int, logs: Path
            ) -> Iterator[tuple[Process, str]]:
    port, metrics = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    if floor:
        argv = floor_argv(target, mock_port)
    else:
        config = logs / "server.toml"
        config.write_text(configs.server_config(configs.ServerShape(
            listen=target, metrics_port=metrics, mock_port=mock_port)))
        argv = router_argv(config)
    with serving([*_callgrind(logs), *argv], target, logs / "server.log", pythonpath,
                 timeout=300, stop_timeout=60) as process:
        yield process, target


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


async def _calls(call: Callable[[int], Awaitable[float | None]], count: int,
                 concurrency: int) -> None:
    left = count

    async def worker(index: int) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call(index)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


def measure(process: Process, target: str, logs: Path, name: str, calls: int, warmup: int,
            concurrency: int) -> float:
    """Instructions per call of `name` on a server running under callgrind."""
    method, model = CALLS[name]

    async def run() -> None:
        grpc_calls = GrpcCalls(target, 1, model, deadline_s=600.0)
        call = getattr(grpc_calls, method)
        try:
            await _calls(call, warmup, concurrency)
            _control("--zero", str(process.pid))
            _control("--instr=on", str(process.pid))
            await _calls(call, calls, concurrency)
            _control("--instr=off", str(process.pid))
        finally:
            await grpc_calls.aclose()

    before = set(logs.glob("callgrind.*"))
    asyncio.run(run())
    _control("--dump", str(process.pid))
    dumps = sorted(set(logs.glob("callgrind.*")) - before, key=lambda p: p.stat().st_mtime)
    total = sum(instructions_in(d.read_text()) for d in dumps)
    for dump in dumps:
        dump.unlink()
    return total / calls


def run_side(label: str, floor: bool, pythonpath: str, names: list[str], args: argparse.Namespace,
             mock_port: int) -> dict[str, float]:
    """Every asked-for call kind on one server."""
    logs = Path(tempfile.mkdtemp(prefix=f"bench-instr-{label}-"))
    results: dict[str, float] = {}
    with _server(floor, pythonpath, mock_port, logs) as (process, target):
        for name in names:
            per_call = measure(process, target, logs, name, args.calls, args.warmup,
                               args.concurrency)
            results[name] = per_call
            print(f"  {label} {name}: {per_call / 1e6:.3f} M instructions per call", flush=True)
    shutil.rmtree(logs, ignore_errors=True)
    return results


def main() -> int:
    """Parse arguments, start the mock, measure each side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CALLS),
                        help=f"comma list of {', '.join(CALLS)}")
    parser.add_argument("--calls", type=int, default=500, help="calls counted per kind")
    parser.add_argument("--warmup", type=int, default=200, help="calls before counting")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--floor", action="store_true", help="measure the floor server too")
    parser.add_argument("--pythonpath", default="", help="run the server from this path")
    parser.add_argument("--baseline", default="", metavar="PYTHONPATH",
                        help="also measure the server found on this path")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(CALLS)
    if unknown:
        parser.error(f"unknown call kinds: {', '.join(sorted(unknown))}")
    logs = Path(tempfile.mkdtemp(prefix="bench-instr-"))
    mock, port = start_mock(Cores("", ""), logs)
    try:
        sides = {"router": run_side("router", False, args.pythonpath, names, args, port)}
        if args.baseline:
            sides["baseline"] = run_side("baseline", False, args.baseline, names, args, port)
        if args.floor:
            sides["floor"] = run_side("floor", True, "", names, args, port)
    finally:
        mock.stop()
        shutil.rmtree(logs, ignore_errors=True)
    print(markdown_table(sides, names, "M instr.", lambda count: f"{count / 1e6:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
