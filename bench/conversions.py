"""Microbenchmark of the api layer's per-call work: protobuf ↔ domain and request ids.

    python -m bench.conversions                               # this checkout
    python -m bench.conversions --baseline /tmp/before/server # and another one, side by side

The baseline's domain.py, api/enums.py, api/responses.py and api/convert.py are loaded from
its own paths, importing one another (stubs and errors come from this checkout), so each side
builds its own domain objects with its own constructors; both are timed alternately in one
process: best of many short batches, so a busy neighbour inflates both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.routing_decision import planner_for, request_for
from provider_router.api import convert, interceptors
from provider_router.v1 import router_pb2 as pb

BASELINE_MODULES = ("domain", "api.enums", "api.responses", "api.convert", "api.interceptors")
"""What the baseline brings of its own, in import order; the rest is this checkout's."""


def load_baseline(server_path: Path) -> dict[str, ModuleType]:
    """The baseline checkout's BASELINE_MODULES, importing one another.

    Each module is run from the baseline's file under a name of its own; while they load, the
    `provider_router.*` names they import point at the baseline copies, then are put back.
    """
    saved: dict[str, tuple[ModuleType, ModuleType, str]] = {}
    loaded: dict[str, ModuleType] = {}
    try:
        for name in BASELINE_MODULES:
            full = f"provider_router.{name}"
            parent_name, _, leaf = full.rpartition(".")
            parent = sys.modules[parent_name]
            saved[full] = (sys.modules[full], parent, leaf)
            module = loaded[name] = _run(
                f"baseline_{name.replace('.', '_')}",
                server_path / "provider_router" / f"{name.replace('.', '/')}.py")
            sys.modules[full] = module
            setattr(parent, leaf, module)
    finally:
        for full, (original, parent, leaf) in saved.items():
            sys.modules[full] = original
            setattr(parent, leaf, original)
    return loaded


def _run(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


class _NoMetadata:
    def invocation_metadata(self) -> tuple[()]:
        return ()


def cases(module: Any, interceptors: Any) -> dict[str, Callable[[], object]]:
    """The timed calls, against `module` (this convert or the baseline's) and its domain."""
    d = module.d
    ids = interceptors.RequestIds()
    message = pb.ChatMessage(role=pb.ROLE_USER, content="Summarise the attached notes.")
    chat = pb.ChatRequest(messages=[message], routing=pb.RoutingOptions(model="bench-fast"))
    usage = d.Usage(12, 7, 19)
    result = d.ChatResult("bench-model", "Hello from the benchmark upstream.",
                          d.FinishReason.STOP, usage, (), "id")
    attempt = d.Attempt("bench-fast", "bench-fast", d.AttemptOutcome.SUCCESS, 0.0012)
    answer = d.ChatResponse(provider="bench-fast", model="bench-model", result=result,
                            cost_usd=None, latency_s=0.0013, attempts=(attempt,),
                            strategy=d.Strategy.WEIGHTED, rule="")
    delta = d.TextDelta("tok ")
    started = d.StreamStarted("bench-fast", "bench-model", d.Strategy.WEIGHTED, "")
    planner = asyncio.run(planner_for(1000, d.Strategy.WEIGHTED))
    decision = planner.decide(request_for("shared-model"))

    def answer_objects() -> object:  # what a connector and the router build for one Chat
        found = d.ChatResult("bench-model", "Hello", d.FinishReason.STOP, d.Usage(12, 7, 19),
                             (), "id")
        tried = d.Attempt("bench-fast", "bench-fast", d.AttemptOutcome.SUCCESS, 0.0012)
        return d.ChatResponse(provider="bench-fast", model="bench-model", result=found,
                              cost_usd=None, latency_s=0.0013, attempts=(tried,),
                              strategy=d.Strategy.WEIGHTED, rule="")

    return {
        "chat_to_domain (1 message)": lambda: module.chat_to_domain(chat, stream=False),
        "chat_response_to_proto": lambda: module.chat_response_to_proto(answer, "rid"),
        "stream_event_to_proto (text delta)": lambda: module.stream_event_to_proto(delta, "r"),
        "stream_event_to_proto (start)": lambda: module.stream_event_to_proto(started, "r"),
        "decision_to_proto (1,000 candidates)": lambda: module.decision_to_proto(decision),
        "domain: answer objects (4)": answer_objects,
        "domain: TextDelta": lambda: d.TextDelta("tok "),
        "request id (new)": lambda: ids(_NoMetadata()),
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
    ours = cases(convert, interceptors)
    theirs: dict[str, Callable[[], object]] = {}
    if args.baseline:
        baseline = load_baseline(args.baseline)
        theirs = cases(baseline["api.convert"], baseline["api.interceptors"])
    print(f"{'call':40s} {'this µs':>10s}" + (f" {'baseline µs':>12s}" if theirs else ""))
    for name, call in ours.items():
        line = f"{name:40s} {best_us(call, args.rounds):10.2f}"
        if name in theirs:
            line += f" {best_us(theirs[name], args.rounds):12.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
