"""Medians of the repeats, the goals of issue 6, and the markdown table.

Issue 6 states its goals for a machine whose Python gRPC floor (a minimal grpc.aio → aiohttp
proxy) added 0.47 ms at concurrency 1 and cost 0.30 ms of CPU per request. The harness
measures that floor here in the same run, so besides the absolute goal every row shows the
goal scaled by how much slower this machine's floor is: a fair bar on a slower machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench.stats import median

Runs = Mapping[str, list[dict[str, float]]]
Medians = dict[str, dict[str, float]]

REFERENCE_FLOOR_ADDED_MS = 0.47
REFERENCE_FLOOR_CPU_MS = 0.30


def medians(runs: Runs) -> Medians:
    """Key-by-key medians over each scenario's repeats."""
    out: Medians = {}
    for scenario, repeats in runs.items():
        keys = sorted({k for r in repeats for k in r})
        out[scenario] = {k: median([r.get(k, math.nan) for r in repeats]) for k in keys}
    return out


@dataclass(frozen=True, slots=True)
class Goal:
    """One goal: a figure of a scenario, compared to a target."""

    label: str
    scenario: str
    key: str
    op: str  # "<=" or ">="
    target: float
    scaling: str  # "latency", "cpu" or "" (not machine-dependent)


GOALS = (
    Goal("Chat c=1: added p50 over direct (ms)", "chat_c1", "added_p50_ms", "<=", 0.7,
         "latency"),
    Goal("StreamChat c=1: added TTFT p50 (ms)", "stream_ttft_c1", "added_ttft_p50_ms", "<=",
         0.7, "latency"),
    Goal("Chat c=64: requests/s", "chat_c64", "per_s", ">=", 3000, "cpu"),
    Goal("Chat c=64: server CPU ms/request", "chat_c64", "server_cpu_ms_per_req", "<=", 0.35,
         "cpu"),
    Goal("StreamChat 20 chunks c=64: streams/s", "stream20_c64", "per_s", ">=", 1000, "cpu"),
    Goal("Route, 1,000 providers: decisions/s", "route_1k", "per_s", ">=", 5000, "cpu"),
    Goal("Open streams: errors", "hold", "errors", "<=", 0, ""),
    Goal("Open streams (all open): loop stalls > 50 ms", "hold", "open_loop_stalls_over_50ms",
         "<=", 0, ""),
    Goal("Open streams (ramp): loop stalls > 50 ms", "hold", "ramp_loop_stalls_over_50ms",
         "<=", 0, ""),
    Goal("Open streams: server peak RSS (MB)", "hold", "peak_rss_mb", "<=", 500, ""),
    Goal("Workers 2 vs 1: CPU/request ratio", "workers", "cpu_ratio", "<=", 1.15, ""),
)


def factors(m: Medians) -> dict[str, float]:
    """How much slower this machine's floor is than issue 6's (1.0 = the same)."""
    added = m.get("floor_chat_c1", {}).get("added_p50_ms", math.nan)
    cpu = m.get("floor_chat_c64", {}).get("server_cpu_ms_per_req", math.nan)
    return {"latency": added / REFERENCE_FLOOR_ADDED_MS, "cpu": cpu / REFERENCE_FLOOR_CPU_MS}


def scaled(goal: Goal, k: Mapping[str, float]) -> float:
    """The goal's target scaled to this machine (unchanged when it is not machine-bound)."""
    if not goal.scaling:
        return goal.target
    factor = k.get(goal.scaling, math.nan)
    if math.isnan(factor) or factor <= 0:
        return math.nan
    return goal.target * factor if goal.op == "<=" else goal.target / factor


def met(value: float, op: str, target: float) -> str:
    """"yes", "no", or "n/a" when either side is missing."""
    if math.isnan(value) or math.isnan(target):
        return "n/a"
    ok = value <= target if op == "<=" else value >= target
    return "yes" if ok else "no"


def with_derived(m: Medians) -> Medians:
    """Adds the workers' CPU ratio (N=2 over N=1)."""
    one = m.get("workers_1", {}).get("server_cpu_ms_per_req", math.nan)
    two = m.get("workers_2", {}).get("server_cpu_ms_per_req", math.nan)
    out = dict(m)
    out["workers"] = {"cpu_ratio": two / one if one else math.nan}
    return out


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _floor_value(goal: Goal, m: Medians) -> float:
    return m.get("floor_" + goal.scenario, {}).get(goal.key, math.nan)


def goals_table(m: Medians) -> str:
    """Markdown: every goal with the router's median, the floor, the targets, met or not."""
    k = factors(m)
    rows = ["| Goal (issue 6) | Router | Floor here | Target | Met | Target scaled to this "
            "machine | Met (scaled) |", "|---|---|---|---|---|---|---|"]
    for goal in GOALS:
        value = m.get(goal.scenario, {}).get(goal.key, math.nan)
        target = scaled(goal, k)
        rows.append(f"| {goal.label} | {_fmt(value)} | {_fmt(_floor_value(goal, m))} | "
                    f"{goal.op.replace('<=', '≤').replace('>=', '≥')} {_fmt(goal.target)} | "
                    f"{met(value, goal.op, goal.target)} | {_fmt(target)} | "
                    f"{met(value, goal.op, target)} |")
    rows.append("")
    rows.append(f"Machine factors (this floor / issue 6's floor): latency "
                f"{_fmt(k['latency'])}x, CPU {_fmt(k['cpu'])}x.")
    return "\n".join(rows)


def details_table(m: Medians) -> str:
    """Markdown: every scenario's median figures."""
    rows = ["| Scenario | Figures (medians) |", "|---|---|"]
    for scenario in sorted(m):
        figures = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(m[scenario].items()))
        rows.append(f"| {scenario} | {figures} |")
    return "\n".join(rows)


def routing_table(rows: list[dict[str, float]]) -> str:
    """Markdown of bench/routing_decision.py's figures."""
    if not rows:
        return ""
    out = ["| Providers | own model µs | shared model µs (explained) | shared, no explanation µs |",
           "|---|---|---|---|"]
    out += [f"| {r['providers']:,.0f} | {r['own_model_us']:.1f} | {r['shared_model_us']:,.1f} "
            f"| {r['shared_model_no_explain_us']:,.1f} |" for r in rows]
    return "\n".join(out)


COMPARED = (("chat_c1", "added_p50_ms"), ("stream_ttft_c1", "added_ttft_p50_ms"),
            ("chat_c64", "per_s"), ("chat_c64", "server_cpu_ms_per_req"),
            ("stream20_c64", "per_s"), ("stream20_c64", "server_cpu_ms_per_req"))


def baseline_table(m: Medians) -> str:
    """Markdown: the baseline checkout against this one, when `--baseline` ran."""
    rows = ["| Scenario | Figure | Baseline | This checkout | Change |", "|---|---|---|---|---|"]
    for scenario, key in COMPARED:
        base = m.get("baseline_" + scenario, {}).get(key, math.nan)
        now = m.get(scenario, {}).get(key, math.nan)
        if math.isnan(base):
            continue
        change = (now - base) / base * 100 if base else math.nan
        rows.append(f"| {scenario} | {key} | {_fmt(base)} | {_fmt(now)} | {change:+.0f}% |")
    return "\n".join(rows) if len(rows) > 2 else ""
