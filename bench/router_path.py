"""Microbenchmark: the routing side of one Chat call, in process, with no network.

The router is assembled as `app.create_app` assembles it (planner with the resilience gate,
breakers, rate limiter, metrics) from the benchmark's own server config (bench/configs.py),
but its connectors answer at once, so only routing and bookkeeping are timed:

- `decide`: Planner.decide(explain=False) for `bench-fast`, served by one provider, as Chat
  and StreamChat decide; `decide_shared3`: the same for a model three providers serve;
- `route`: Planner.decide with the explanation Route returns;
- `chat`: a whole Router.chat (decide, chain, one attempt, response);
- `stream`: a whole Router.stream of a three-delta answer.

Each figure is the best µs per call over repeated batches (like timeit: on a shared machine
every slower batch also measures the neighbours). On a noisy VM even the best batch moves by
a factor of two between runs, so `--instructions` counts instructions per call instead, with
callgrind (slow, but the same code gives the same count whatever the neighbours do):

    python -m bench.router_path                                   # µs, this tree
    PYTHONPATH=/tmp/before/server python -m bench.router_path     # µs, another tree
    python -m bench.router_path --instructions --baseline /tmp/before/server
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import select
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import provider_router
from bench import configs
from bench.instructions import instructions_in, markdown_table
from bench.routing_decision import best_us, request_for
from provider_router import domain as d
from provider_router.app import with_default_target
from provider_router.config import build_config
from provider_router.resilience.breaker import ProviderBreakers
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.ratelimit import RateLimiter
from provider_router.routing.dispatch import Resilience
from provider_router.routing.gate import RouterGate
from provider_router.routing.planner import Planner
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.registry import Registry
from provider_router.routing.router import Router
from provider_router.routing.status import ProviderStatusView
from provider_router.state.memory import MemoryStateStore
from provider_router.telemetry.metrics import Metrics

_USAGE = d.Usage(12, 3, 15)


class InstantConnector:
    """A connector that answers without I/O: what is left to time is the router's own work."""

    def __init__(self, spec: d.ProviderSpec, settings: object) -> None:
        self._result = d.ChatResult(spec.models[0].name if spec.models else "", "ok",
                                    d.FinishReason.STOP, _USAGE)

    async def chat(self, request: d.ProviderRequest, deadline: Deadline) -> d.ChatResult:
        """The same answer every time."""
        return self._result

    async def stream(self, request: d.ProviderRequest, deadline: Deadline
                     ) -> AsyncGenerator[d.StreamEvent, None]:
        """Three deltas and a finish."""
        for text in ("o", "k", "!"):
            yield d.TextDelta(text)
        yield d.StreamFinish(d.FinishReason.STOP, _USAGE, request.model)

    async def probe(self) -> d.ProbeResult:
        """Always fine."""
        return d.ProbeResult(True)

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class Rig:
    """A planner and router over the benchmark config, with instant connectors."""

    planner: Planner
    router: Router


async def build_rig() -> Rig:
    """The router as the composition root builds it, minus the server and the network."""
    shape = configs.ServerShape(listen="127.0.0.1:1", metrics_port=0, mock_port=9,
                                extra_providers=3)
    config = build_config(tomllib.loads(configs.server_config(shape)), {}, "bench")
    routing = with_default_target(config.routing, config.providers)
    registry = Registry(MemoryStateStore(None), routing)
    await registry.load(config.providers)
    rng = random.Random(7)
    res = config.resilience
    resilience = Resilience(ProviderBreakers(res.breaker), RateLimiter(), res, rng)
    gate = RouterGate(registry, {}, resilience.breakers, resilience.limiter)
    planner = Planner(registry, routing, rng, gate)
    pool = ConnectorPool(config.connectors, InstantConnector)
    status = ProviderStatusView(registry, gate, resilience.breakers)
    router = Router(registry, planner, pool, resilience, status, Metrics(), {},
                    default_completion_tokens=routing.default_completion_tokens)
    return Rig(planner, router)


def _sync_batch(call: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            call()
    return run


def _async_batch(loop: asyncio.AbstractEventLoop,
                 call: Callable[[], Awaitable[object]]) -> Callable[[int], None]:
    async def many(n: int) -> None:
        for _ in range(n):
            await call()

    def run(n: int) -> None:
        loop.run_until_complete(many(n))
    return run


def batches(loop: asyncio.AbstractEventLoop, rig: Rig) -> dict[str, Callable[[int], None]]:
    """Every figure's batch runner: `run(n)` makes n calls."""
    fast = request_for(configs.FAST)
    shared = request_for(configs.SHARED)
    streamed = d.ChatRequest(messages=fast.messages, routing=fast.routing, stream=True)
    planner, router = rig.planner, rig.router

    async def chat() -> None:
        await router.chat(fast, Deadline.after(120.0))

    async def stream() -> None:
        async for _ in router.stream(streamed, Deadline.after(120.0)):
            pass

    # A call first, so breakers and stats exist as they do in a serving router.
    loop.run_until_complete(chat())
    return {
        "decide": _sync_batch(lambda: planner.decide(fast, explain=False)),
        "decide_shared3": _sync_batch(lambda: planner.decide(shared, explain=False)),
        "route": _sync_batch(lambda: planner.decide(fast)),
        "chat": _async_batch(loop, chat),
        "stream": _async_batch(loop, stream),
    }


def measure(budget_s: float) -> dict[str, float]:
    """Every figure, best µs per call."""
    loop = asyncio.new_event_loop()
    runs = batches(loop, loop.run_until_complete(build_rig()))
    figures = {name: best_us(run, budget_s) for name, run in runs.items()}
    loop.close()
    return figures


# --- instruction counts -------------------------------------------------------------------


def child() -> None:
    """Under callgrind: build the rig, warm up, then run `NAME COUNT` commands from stdin.

    stdin is polled with a timeout so the process never sits in one long system call:
    callgrind_control's requests are served only while the process runs.
    """
    loop = asyncio.new_event_loop()
    runs = batches(loop, loop.run_until_complete(build_rig()))
    for run in runs.values():
        run(200)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.05)
        if not ready:
            continue
        line = sys.stdin.readline().split()
        if not line:
            return
        runs[line[0]](int(line[1]))
        print("done", flush=True)


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=300)


def count_side(pythonpath: str, calls: int) -> dict[str, float]:
    """Instructions per call of every figure, for the tree on `pythonpath` ("" = this one)."""
    out = Path(tempfile.mkdtemp(prefix="bench-router-path-"))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
            "--compress-strings=no", f"--callgrind-out-file={out}/callgrind.%p",
            sys.executable, "-m", "bench.router_path", "--child"]
    figures: dict[str, float] = {}
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env) as process:
        assert process.stdin is not None and process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the callgrind child did not start")
        pid = str(process.pid)
        for name in FIGURES:
            _control("--zero", pid)
            _control("--instr=on", pid)
            process.stdin.write(f"{name} {calls}\n")
            process.stdin.flush()
            process.stdout.readline()
            _control("--instr=off", pid)
            before = set(out.glob("callgrind.*"))
            _control("--dump", pid)
            dumps = set(out.glob("callgrind.*")) - before
            figures[name] = sum(instructions_in(p.read_text()) for p in dumps) / calls
            for dump in dumps:
                dump.unlink()
        process.stdin.close()
    shutil.rmtree(out, ignore_errors=True)
    return figures


FIGURES = ("decide", "decide_shared3", "route", "chat", "stream")


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per figure")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per call with callgrind instead of timing")
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per figure")
    parser.add_argument("--baseline", default="", metavar="PYTHONPATH",
                        help="with --instructions, also count the tree on this path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    print(f"router path, Python {platform.python_version()}, "
          f"provider_router from {provider_router.__file__}")
    if not args.instructions:
        for name, us in measure(args.budget).items():
            print(f"{name:>15}: {us:8.2f} µs/call", flush=True)
        return 0
    sides = {"this tree": count_side("", args.calls)}
    if args.baseline:
        sides["baseline"] = count_side(args.baseline, args.calls)
    print(markdown_table(sides, list(FIGURES), "instr./call", lambda count: f"{count:,.0f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
