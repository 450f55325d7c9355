"""The state scenario: Chat c=64 with limits on Redis (`redis://`) vs in memory (`memory://`).

Both servers give the called provider a rate limit and max_concurrent far above the load, so
every call is admitted through the limiter: with `memory://` by the in-process buckets, with
`redis://` by one GCRA Lua script and one concurrency-slot script per call on a real
redis-server started for the run. The two alternate per repeat, so drift on a shared machine
hits both alike. The redis-server's own CPU per request is reported beside the router's
(`redis_cpu_ms_per_req`); the 15% goal is about the router's CPU per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bench.procstat import cpu_seconds
from bench.scenarios import Bench, Figures, chat_c64
from tests.redis.server import RedisServer


def state_scenario(bench: Bench) -> Iterator[tuple[str, Figures]]:
    """(name, figures) of every repeat: state_memory_chat_c64 and state_redis_chat_c64."""
    redis = RedisServer(Path(bench.settings.logs) / "redis").start()
    try:
        assert redis.process is not None
        pid = redis.process.pid
        with bench.router("state-memory", limits=True) as memory, \
                bench.router("state-redis", limits=True, state_url=redis.url) as shared:
            for _ in range(bench.settings.repeat):
                yield "state_memory_chat_c64", chat_c64(bench, memory)
                before = cpu_seconds(pid)
                figures = chat_c64(bench, shared)
                used = cpu_seconds(pid) - before
                # Requests in the window and warm-up alike reach Redis; per_s covers the
                # window only, so this slightly overstates Redis's share.
                served = figures["per_s"] * (bench.settings.duration_s
                                             + bench.settings.warmup_s)
                figures["redis_cpu_ms_per_req"] = used * 1000.0 / served if served else 0.0
                yield "state_redis_chat_c64", figures
    finally:
        redis.kill()
