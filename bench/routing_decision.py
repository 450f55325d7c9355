"""Microbenchmark: one routing decision with 10, 100, 1,000 and 10,000 registered providers.

Every provider serves a shared model plus one of its own. Per size it times:
- `own`: a model one provider serves. The registry's model index makes the candidate set
  one provider whatever the registry's size, so this shows what registry size itself costs.
- `shared`: the model every provider serves, so every provider is a candidate and must be
  checked and ordered: cost grows linearly with the candidates. Timed twice: with the full
  explanation Route returns (one CandidateReport per candidate), and with `explain=False`,
  as Chat and StreamChat decide.

Usage: python bench/routing_decision.py [--strategy weighted] [--out bench/results/x.json]
Prints µs per decision and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from provider_router.domain import (
    ChatMessage,
    ChatRequest,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    Role,
    RoutingOptions,
    Strategy,
)
from provider_router.routing.planner import Planner
from provider_router.routing.registry import Registry
from provider_router.routing.settings import RoutingSettings
from provider_router.state.memory import MemoryStateStore

SIZES = (10, 100, 1_000, 10_000)
SHARED = "shared-model"


def providers(count: int) -> list[ProviderSpec]:
    """`count` providers in four priority tiers, each serving the shared model and its own."""
    return [ProviderSpec(
        name=f"p{i:05d}", kind=ProviderKind.MOCK, priority=i % 4, weight=1.0 + i % 3,
        models=(ModelSpec(SHARED, input_per_mtok=1.0 + i % 7, output_per_mtok=2.0,
                          context_window=128_000),
                ModelSpec(f"own-{i}", input_per_mtok=1.0, output_per_mtok=2.0)))
        for i in range(count)]


async def planner_for(count: int, strategy: Strategy) -> Planner:
    """A planner over a registry of `count` providers."""
    settings = RoutingSettings(strategy=strategy)
    registry = Registry(MemoryStateStore(None), settings)
    await registry.load(providers(count))
    return Planner(registry, settings, random.Random(7))


def time_decisions(planner: Planner, request: ChatRequest, budget_s: float,
                   explain: bool = True) -> float:
    """Best µs per decision over repeated timed batches (garbage collection on)."""
    def run_batch(count: int) -> None:
        for _ in range(count):
            planner.decide(request, explain=explain)

    return best_us(run_batch, budget_s)


def best_us(run_batch: Callable[[int], None], budget_s: float) -> float:
    """Best µs per call over batches of ~5 ms, for `budget_s` seconds (at least 5 batches).

    The best batch, like timeit, because on a shared machine every slower batch measures the
    neighbours as well as the code. The first call warms up (zoneinfo, first allocations).
    """
    run_batch(1)  # warm up
    batch = 1
    while True:
        start = time.perf_counter()
        run_batch(batch)
        if time.perf_counter() - start > 0.005:
            break
        batch *= 2
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        run_batch(batch)
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return min(samples)


def request_for(model: str) -> ChatRequest:
    """A one-message chat request for `model`."""
    return ChatRequest(messages=(ChatMessage(Role.USER, "Summarise the attached notes."),),
                       routing=RoutingOptions(model=model))


async def run(strategy: Strategy, budget_s: float) -> list[dict[str, float | int | str]]:
    """Time both requests at every size."""
    rows: list[dict[str, float | int | str]] = []
    for count in SIZES:
        planner = await planner_for(count, strategy)
        own = time_decisions(planner, request_for(f"own-{count // 2}"), budget_s)
        shared = time_decisions(planner, request_for(SHARED), budget_s)
        lean = time_decisions(planner, request_for(SHARED), budget_s, explain=False)
        rows.append({"providers": count, "own_model_us": round(own, 2),
                     "shared_model_us": round(shared, 1),
                     "shared_model_no_explain_us": round(lean, 1),
                     "shared_us_per_candidate": round(shared / count, 3),
                     "shared_no_explain_us_per_candidate": round(lean / count, 3)})
        print(f"{count:>6} providers | own model {own:7.1f} µs | shared model: "
              f"{shared:9.1f} µs ({shared / count:5.2f} µs/candidate), without explanation "
              f"{lean:9.1f} µs ({lean / count:5.2f} µs/candidate)", flush=True)
    return rows


def main() -> int:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default=Strategy.WEIGHTED.value,
                        choices=[s.value for s in Strategy if s is not Strategy.EXPLICIT])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--out", type=Path, default=Path("bench/results/routing_decision.json"))
    args = parser.parse_args()
    print(f"routing decision, strategy {args.strategy}, Python {platform.python_version()}")
    rows = asyncio.run(run(Strategy(args.strategy), args.budget))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "routing_decision", "strategy": args.strategy,
        "python": platform.python_version(), "machine": platform.machine(),
        "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
