"""Admission accuracy of the global rate limit on Redis: limit, replicas, offered load, admitted.

    python -m bench.admission                   # 600 rpm; 1, 3 and 5 replicas at 3x; 60 s each
    python -m bench.admission --seconds 20 --limit 600 --replicas 3 --offered 3,5

Each replica is a `RedisBucketStore` on its own connection (its own `RedisLink`) to one real
redis-server started for the run; all replicas offer their share of `offered x limit` per
minute, evenly paced, for `--seconds`, starting from a full bucket (the cold start a real
deployment has). The table gives what was admitted, the most a single exact token bucket
admits in that time (capacity + refill x seconds), and the steady-state rate per minute
(admissions after the offered load drained the initial bucket), the figure to hold to the
limit. `fallback` counts admissions decided locally because Redis did not answer
within the budget (`[state] timeout`, 5 ms by default) or was down.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from provider_router.resilience.ratelimit import Charge
from provider_router.state.redis_batch import AdmissionBatch
from provider_router.state.redis_limits import RedisBucketStore
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer


@dataclass(frozen=True, slots=True)
class Row:
    """One measured configuration."""

    limit: int
    replicas: int
    offered: int
    seconds: float
    admitted: int
    fallback: int
    times: tuple[float, ...]

    @property
    def bound(self) -> float:
        """What one exact token bucket admits in `seconds` from full."""
        return self.limit + self.limit / 60.0 * self.seconds

    @property
    def drained_at(self) -> float:
        """When the offered load has emptied the initial bucket: limit / (offered - 1)
        minutes (the bucket refills at the limit while it drains)."""
        return 60.0 / (self.offered - 1) if self.offered > 1 else self.seconds

    @property
    def steady_per_min(self) -> float:
        """Admissions per minute once the initial bucket was drained."""
        rest = self.seconds - self.drained_at
        late = sum(1 for t in self.times if t >= self.drained_at)
        return late / rest * 60.0 if rest > 0 else 0.0


class _Replica:
    def __init__(self, store: RedisBucketStore, link: RedisLink) -> None:
        self.store = store
        self.link = link
        self.admitted: list[float] = []
        self.fallback = 0


async def _offer(replica: _Replica, charge: Charge, rate: float, seconds: float,
                 start: float) -> None:
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        local = not replica.link.up
        before = replica.store.decided_locally
        if await replica.store.take([charge], time.monotonic()) == 0.0:
            replica.admitted.append(time.monotonic() - start)
            replica.fallback += local or replica.store.decided_locally > before
    count = int(rate * seconds)
    for index in range(count):
        await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)


async def measure(url: str, limit: int, replicas: int, offered: int, seconds: float,
                  timeout_s: float, prefix: str) -> Row:
    """Drive `replicas` stores at `offered` x `limit` per minute in total."""
    links = [RedisLink.from_url(url, None) for _ in range(replicas)]
    members = [_Replica(RedisBucketStore(
        AdmissionBatch(link, timeout_s, f"replica-{n}", f"{prefix}alive", 5.0), replicas, prefix),
        link) for n, link in enumerate(links)]
    charge = Charge("bench/rpm", float(limit), limit / 60.0, 1.0)
    per_replica = limit / 60.0 * offered / replicas
    start = time.monotonic() + 0.2
    await asyncio.gather(*(_offer(m, charge, per_replica, seconds, start) for m in members))
    for link in links:
        await link.aclose()
    times = tuple(sorted(t for m in members for t in m.admitted))
    return Row(limit, replicas, offered, seconds, len(times), sum(m.fallback for m in members),
               times)


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| limit (rpm) | replicas | offered (x limit) | window (s) | admitted | "
             "exact bucket bound | admitted / bound | steady state (per min) | fallback |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.limit} | {r.replicas} | {r.offered} | {r.seconds:.0f} | {r.admitted} | "
              f"{r.bound:.0f} | {r.admitted / r.bound:.3f} | {r.steady_per_min:.0f} | "
              f"{r.fallback} |" for r in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> str:
    """Start redis-server, measure every configuration, return the table."""
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            for replicas in args.replicas:
                for offered in args.offered:
                    row = await measure(server.url, args.limit, replicas, offered,
                                        args.seconds, args.timeout,
                                        f"bench-{replicas}-{offered}:")
                    print(f"  {row.replicas} replicas: {row.admitted} admitted",
                          flush=True)
                    rows.append(row)
        finally:
            server.kill()
    return table(rows)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 3, 5])
    parser.add_argument("--offered", type=lambda s: [int(x) for x in s.split(",")],
                        default=[3])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=0.005,
                        help="the hot-path budget ([state] timeout)")
    print(asyncio.run(main_async(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
