"""Microbenchmark of the api layer's per-call work: protobuf ↔ domain and request ids.

    python -m bench.conversions                               # this checkout
    python -m bench.conversions --baseline /tmp/before/server # and another one, side by side

The baseline's api/convert.py is loaded from its own path (its imports resolve to this
checkout's domain and stubs), and both are timed alternately in one process: best of many
short batches, so a busy neighbour inflates both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.routing_decision import planner_for, request_for
from provider_router import domain as d
from provider_router.api import convert
from provider_router.api.interceptors import RequestIds
from provider_router.v1 import router_pb2 as pb


def load_baseline(server_path: Path) -> ModuleType:
    """The baseline checkout's api/convert.py as a module of its own."""
    path = server_path / "provider_router" / "api" / "convert.py"
    spec = importlib.util.spec_from_file_location("baseline_convert", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(module: Any) -> dict[str, Callable[[], object]]:
    """The timed calls, against `module` (this convert or the baseline's)."""
    message = pb.ChatMessage(role=pb.ROLE_USER, content="Summarise the attached notes.")
    chat = pb.ChatRequest(messages=[message], routing=pb.RoutingOptions(model="bench-fast"))
    result = d.ChatResult("bench-model", "Hello from the benchmark upstream.",
                          d.FinishReason.STOP, d.Usage(12, 7, 19), (), "id")
    attempt = d.Attempt("bench-fast", "bench-fast", d.AttemptOutcome.SUCCESS, 0.0012)
    answer = d.ChatResponse(provider="bench-fast", model="bench-model", result=result,
                            cost_usd=None, latency_s=0.0013, attempts=(attempt,),
                            strategy=d.Strategy.WEIGHTED, rule="")
    delta = d.TextDelta("tok ")
    planner = asyncio.run(planner_for(1000, d.Strategy.WEIGHTED))
    decision = planner.decide(request_for("shared-model"))
    return {
        "chat_to_domain (1 message)": lambda: module.chat_to_domain(chat, stream=False),
        "chat_response_to_proto": lambda: module.chat_response_to_proto(answer, "rid"),
        "stream_event_to_proto (text delta)": lambda: module.stream_event_to_proto(delta, "r"),
        "decision_to_proto (1,000 candidates)": lambda: module.decision_to_proto(decision),
    }


def best_us(call: Callable[[], object], rounds: int) -> float:
    """Best µs per call over `rounds` batches of ~2 ms."""
    number = max(1, int(0.002 / max(1e-7, timeit.timeit(call, number=1))))
    return min(timeit.timeit(call, number=number) / number for _ in range(rounds)) * 1e6


def main() -> int:
    """Time every case (and the baseline's) and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None,
                        help="server/ directory of another checkout")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    ours = cases(convert)
    theirs = cases(load_baseline(args.baseline)) if args.baseline else {}
    ids = RequestIds()

    class _NoMetadata:
        def invocation_metadata(self) -> tuple[()]:
            return ()

    ours["request id (new)"] = lambda: ids(_NoMetadata())  # type: ignore[arg-type]
    if args.baseline:
        theirs["request id (new)"] = lambda: uuid.uuid4().hex
    print(f"{'call':40s} {'this µs':>10s}" + (f" {'baseline µs':>12s}" if theirs else ""))
    for name, call in ours.items():
        line = f"{name:40s} {best_us(call, args.rounds):10.2f}"
        if name in theirs:
            line += f" {best_us(theirs[name], args.rounds):12.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
