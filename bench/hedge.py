"""Hedged requests against a heavy-tailed upstream: tail TTFT with and without hedging.

    python -m bench.hedge                      # StreamChat, c=32, 3 rounds of 1,000 calls
    python -m bench.hedge --mode chat --requests 2000 --rounds 5 --slow-pct 5 --slow-ms 2000

Two openai_compatible providers serve the same model from the one mock upstream
(bench/mock_upstream.py, path `/tail/...`): each request independently waits `--slow-ms`
before its first byte with probability `--slow-pct` %, else `--fast-ms`. The failover order
puts `tail-a` first. The same load runs against the real server once per variant: no hedging,
a fixed hedge delay, and a percentile delay ("p90" of the target's observed TTFT, with the
fixed delay until it has 20 observations). Reported per variant: p50/p90/p99/max time to
first token (latency for Chat) as the caller sees it, the upstream calls per request (the
mock's own count over the router's completed RPCs: 1.0 means no extra calls), how many of
them the router cancelled (hedge losers hanging up), and the hedges the router counted.

The load is a closed loop (each of the callers sends its next call when the last one ends),
so cutting the slow calls short raises the call rate, and with it the load on the server:
compare calls/s beside the latencies. Latency on a shared machine moves with whatever else
runs, so the variants run in rotation,
`--rounds` times, and each percentile is the median over the rounds (with the range of p99
across rounds); the counts are totals over all rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.processes import Cores, free_port, router_argv, run_loadgen, serving, start_mock

MODEL = "bench-tail"


@dataclass(frozen=True, slots=True)
class Variant:
    """One server configuration: its name and its [routing.hedge] table (empty: none)."""

    name: str
    hedge: str


def variants(after_ms: int) -> list[Variant]:
    """Off, a fixed delay, and a percentile delay."""
    after = after_ms / 1000
    return [Variant("off", ""),
            Variant(f"after {after_ms} ms", f"after = {after}"),
            Variant("after p90", f'after = "p90"\nfallback_after = {after}')]


def config(listen: str, metrics_port: int, mock_port: int, tail: str, hedge: str) -> str:
    """The server config: two providers on the heavy-tailed mock, failover order a, b."""
    base = f"http://127.0.0.1:{mock_port}/tail/{tail}/v1"
    providers = "\n".join(
        f'[[providers]]\nname = "{name}"\nkind = "openai_compatible"\nbase_url = "{base}"\n'
        f'models = ["{MODEL}"]\nmax_concurrent = 10000\n' for name in ("tail-a", "tail-b"))
    hedge_table = f"[routing.hedge]\n{hedge}\n" if hedge else ""
    return (f'[server]\nlisten = "{listen}"\ndrain_delay = 0.0\ngrace = 5.0\n\n'
            f'[logging]\nlevel = "warning"\n\n[state]\nurl = "memory://"\n'
            f'registry_file = "none"\n\n[metrics]\nport = {metrics_port}\n'
            f'host = "127.0.0.1"\n\n[autoregister]\nenabled = false\n\n'
            f'[resilience]\nhealth_interval = 0\n\n'
            f'[routing]\nstrategy = "failover"\nfailover_order = ["tail-a", "tail-b"]\n'
            f"{hedge_table}\n{providers}")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total


@dataclass(frozen=True, slots=True)
class Figures:
    """One variant's run (or, combined, all its rounds)."""

    variant: str
    ttft_ms: dict[str, float]
    requests: int
    rpcs: float
    upstream_calls: int
    cancelled_upstream: int
    hedges: float
    hedge_wins: float
    errors: int
    server_cpu_ms: float  # the server's CPU per call
    rps: float  # completed calls per second
    p99_range: tuple[float, float] = (0.0, 0.0)

    @property
    def calls_per_request(self) -> float:
        """Upstream calls per completed RPC (1.0: no extra calls)."""
        return round(self.upstream_calls / self.rpcs, 4) if self.rpcs else float("nan")


def run_variant(variant: Variant, args: argparse.Namespace, cores: Cores, mock_port: int,
                logs: Path) -> Figures:
    """One server with this variant's config under the load; its figures."""
    listen = f"127.0.0.1:{free_port()}"
    metrics_port = free_port()
    tail = f"{args.chunks}/{args.slow_pct}/{args.slow_ms}/{args.fast_ms}"
    path = logs / f"hedge-{variant.name.replace(' ', '-')}.toml"
    path.write_text(config(listen, metrics_port, mock_port, tail, variant.hedge))
    mock_stats = f"http://127.0.0.1:{mock_port}/stats"
    with serving(router_argv(path), listen, logs / "server.log") as server:
        before = json.loads(_get(mock_stats))
        result = run_loadgen(
            [args.mode, "--target", listen, "--model", MODEL, "--concurrency",
             str(args.concurrency), "--warmup", "0", "--duration", str(args.max_seconds),
             "--max-requests", str(args.requests), "--deadline", "30",
             "--watch", f"server={server.pid}"],
            cores.load, timeout=args.max_seconds + 120)
        after = json.loads(_get(mock_stats))
        metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    method = "StreamChat" if args.mode == "stream" else "Chat"
    timing = result["ttft_ms" if args.mode == "stream" else "latency_ms"]
    errors, cpu = result["errors"], result["cpu_ms_per_request"]
    assert isinstance(timing, dict) and isinstance(errors, dict) and isinstance(cpu, dict)
    return Figures(
        variant=variant.name, ttft_ms={k: float(v) for k, v in timing.items()},
        requests=int(str(result["requests"])),
        rpcs=_metric_sum(metrics, "provider_router_rpcs_total", method=method),
        upstream_calls=after["chat_requests"] - before["chat_requests"],
        cancelled_upstream=after["cancelled"] - before["cancelled"],
        hedges=_metric_sum(metrics, "provider_router_hedges_total"),
        hedge_wins=_metric_sum(metrics, "provider_router_hedge_races_total", winner="hedge"),
        errors=sum(int(n) for n in errors.values()),
        server_cpu_ms=float(cpu.get("server", float("nan"))),
        rps=float(str(result["rps"])))


def combined(rounds: list[Figures]) -> Figures:
    """One variant over its rounds: median percentiles, the p99 range, summed counts."""
    p99s = [r.ttft_ms["p99"] for r in rounds]
    return Figures(
        variant=rounds[0].variant,
        ttft_ms={k: statistics.median(r.ttft_ms[k] for r in rounds)
                 for k in ("p50", "p90", "p99", "max")},
        requests=sum(r.requests for r in rounds), rpcs=sum(r.rpcs for r in rounds),
        upstream_calls=sum(r.upstream_calls for r in rounds),
        cancelled_upstream=sum(r.cancelled_upstream for r in rounds),
        hedges=sum(r.hedges for r in rounds), hedge_wins=sum(r.hedge_wins for r in rounds),
        errors=sum(r.errors for r in rounds),
        server_cpu_ms=statistics.median(r.server_cpu_ms for r in rounds),
        rps=statistics.median(r.rps for r in rounds),
        p99_range=(min(p99s), max(p99s)))


def table(rows: list[Figures], what: str) -> str:
    """The combined figures as a markdown table."""
    lines = [f"| variant | {what} p50 (ms) | p90 | p99 | p99 range | max | upstream calls per "
             "request | cancelled upstream | hedges (won) | server CPU per call (ms) | calls/s "
             "| errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        t = row.ttft_ms
        low, high = row.p99_range
        lines.append(
            f"| {row.variant} | {t['p50']:.0f} | {t['p90']:.0f} | {t['p99']:.0f} "
            f"| {low:.0f}-{high:.0f} | {t['max']:.0f} | {row.calls_per_request} "
            f"| {row.cancelled_upstream} | {row.hedges:.0f} ({row.hedge_wins:.0f})"
            f" | {row.server_cpu_ms:.3f} | {row.rps:.0f} | {row.errors} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every variant and print the table (and the JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("stream", "chat"), default="stream")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1000, help="calls per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--slow-pct", type=float, default=5.0)
    parser.add_argument("--slow-ms", type=int, default=2000)
    parser.add_argument("--fast-ms", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--after-ms", type=int, default=100, help="the fixed hedge delay")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args(argv)
    cores = Cores.detect(not args.no_pin)
    logs = Path(tempfile.mkdtemp(prefix="bench-hedge-"))
    mock, mock_port = start_mock(cores, logs)
    try:
        chosen = variants(args.after_ms)
        runs: dict[str, list[Figures]] = {v.name: [] for v in chosen}
        for _ in range(args.rounds):
            for variant in chosen:
                runs[variant.name].append(run_variant(variant, args, cores, mock_port, logs))
    finally:
        mock.stop()
    rows = [combined(runs[v.name]) for v in chosen]
    what = "TTFT" if args.mode == "stream" else "latency"
    print(f"{args.mode}, c={args.concurrency}, upstream first byte: {args.slow_pct}% at "
          f"{args.slow_ms} ms, else {args.fast_ms} ms; {args.rounds} rounds of "
          f"{args.requests} calls per variant (medians)")
    print(table(rows, what))
    if args.json:
        print(json.dumps({"combined": [asdict(r) for r in rows],
                          "runs": {k: [asdict(r) for r in v] for k, v in runs.items()}},
                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
