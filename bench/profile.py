"""Profile the server under one scenario's load with py-spy, and summarise where CPU went.

    python -m bench.profile chat_c64            # or stream20_c64, route_own, route_shared, hold
    python -m bench.profile chat_c64 --seconds 10 --keep /tmp/chat64.txt
    python -m bench.profile chat_c64 --floor    # the same load against the floor server

py-spy (`pip install py-spy`, a bench-only tool) samples the server's thread that holds the
GIL (`--gil`), so the shares are of the Python-side CPU: gRPC's and uvloop's C code shows as
the self time of the outermost frame (Runner.run). The summary is bench/profile_summary.py's.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import configs
from bench.processes import Cores, start_mock
from bench.profile_summary import parse, summarise
from bench.scenarios import Bench, Settings

LOADS: dict[str, tuple[str, int, str, dict[str, int]]] = {
    # scenario: (loadgen mode, concurrency, model, server shape)
    "chat_c64": ("chat", 64, configs.FAST, {}),
    "stream20_c64": ("stream", 64, configs.CHUNKY, {}),
    "route_own": ("route", 64, "bench-own-500", {"extra_providers": 1000}),
    "route_shared": ("route", 16, configs.SHARED, {"extra_providers": 1000}),
    "hold": ("hold", 2000, configs.SLOW, {"slow_chunks": 12}),
}


def record(pid: int, seconds: float, out: Path) -> None:
    """py-spy record of `pid` for `seconds` into `out` (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    subprocess.run([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250",
                    "--gil", "-f", "raw", "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    """Start mock and server, load it, record, summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(LOADS))
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds recorded")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="keep the raw stacks here")
    parser.add_argument("--pythonpath", default="", help="run the server from this path")
    parser.add_argument("--floor", action="store_true",
                        help="profile bench/floor_server.py instead of the router")
    args = parser.parse_args()
    mode, concurrency, model, shape = LOADS[args.scenario]
    logs = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    settings = Settings(repeat=1, warmup_s=1.0, duration_s=args.seconds + 2.0,
                        hold_streams=concurrency, hold_chunks=12, hold_ramp_s=4.0,
                        cores=Cores.detect(True), logs=logs, pythonpath=args.pythonpath)
    out = args.keep or logs / "stacks.txt"
    mock, port = start_mock(settings.cores, logs)
    try:
        bench = Bench(settings, port, mock.pid)
        serving = bench.floor() if args.floor else bench.router("profiled", None, **shape)
        with serving as server:
            # Recording starts after the warm-up and ends before the window does.
            timer = threading.Timer(1.5, record, (server.pid, args.seconds, out))
            timer.start()
            result = bench.load(mode, server, concurrency=concurrency, model=model,
                                channels=max(1, concurrency // 500),
                                extra=("--ramp", "4") if mode == "hold" else ())
            timer.join()
    finally:
        mock.stop()
    print(f"{args.scenario}: {result.get('rps')} per s, server CPU "
          f"{result.get('cpu_ms_per_request', {}).get('server')} ms per call (while profiled)")
    print(summarise(parse(out.read_text()), args.top))
    if args.keep is None:
        shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
