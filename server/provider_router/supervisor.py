"""`serve --workers N`: N server processes on one port, and the parent that supervises them.

Each worker is a fresh interpreter running `provider-router serve` with
`PROVIDER_ROUTER_SERVER_WORKERS=1`; all bind the same address with SO_REUSEPORT
(`grpc.so_reuseport`, on in app.SERVER_OPTIONS), so the kernel spreads connections across
them. Fresh interpreters rather than fork: gRPC's core does not survive a fork after it has
started threads, and every worker must own its event loop, connectors and state.

The parent holds no server: it forwards SIGTERM/SIGINT to every worker, waits for them to
drain (each reports NOT_SERVING, waits `drain_delay`, then gives calls `grace` seconds) and
exits 0 when all exited 0. A worker that dies on its own is restarted with backoff; one that
exits 2 (a configuration mistake) stops the whole group, since a restart cannot fix it. With
`[metrics] port = P`, worker i serves /metrics on port P + i.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from provider_router.config import Config
from provider_router.errors import ConfigError

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
_PR_SET_PDEATHSIG = 1
# A worker that ran this long before dying is restarted at once; faster deaths back off.
_HEALTHY_UPTIME_S = 30.0
_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """How to start each worker."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    count: int
    metrics_port: int
    stop_timeout_s: float


def check_workers(config: Config, listen: str | None, count: int) -> None:
    """Several workers need a fixed port: with port 0 each would bind a different one."""
    address = listen or config.server.listen
    if count > 1 and address.rpartition(":")[2] == "0":
        raise ConfigError("server.listen", address, "a fixed port when --workers is above 1")
    health = config.server.health_listen
    if count > 1 and health and health.rpartition(":")[2] == "0":
        raise ConfigError("server.health_listen", health,
                          "a fixed port when --workers is above 1")


def plan(config: Config, env: Mapping[str, str], config_path: str | None,
         listen: str | None, count: int) -> WorkerPlan:
    """The workers' command line and environment, from the parent's own arguments."""
    argv = [sys.executable, "-m", "provider_router", "serve"]
    if config_path:
        argv += ["--config", config_path]
    if listen:
        argv += ["--listen", listen]
    server = config.server
    return WorkerPlan(tuple(argv), dict(env), count, config.metrics.port,
                      server.drain_delay_s + server.grace_s + 10.0)


def worker_env(plan: WorkerPlan, index: int) -> dict[str, str]:
    """Worker `index`'s environment: one process each, and its own metrics port."""
    env = dict(plan.env)
    env["PROVIDER_ROUTER_SERVER_WORKERS"] = "1"
    if plan.metrics_port:
        env["PROVIDER_ROUTER_METRICS_PORT"] = str(plan.metrics_port + index)
    return env


def backoff_s(failures: int) -> float:
    """Seconds before restarting a worker that failed `failures` times in a row."""
    return float(min(_MAX_BACKOFF_S, 2 ** max(0, failures - 1))) if failures else 0.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGTERM if the supervisor dies without forwarding one."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    started: float
    failures: int = 0


class Supervisor:
    """Starts the workers, restarts the ones that die, forwards signals, collects exits."""

    def __init__(self, plan: WorkerPlan) -> None:
        self._plan = plan
        self._workers: dict[int, _Worker] = {}
        self._stopping = asyncio.Event()
        self._fatal = 0

    async def _spawn(self, index: int, failures: int = 0) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._plan.argv, env=worker_env(self._plan, index),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self._workers[index] = _Worker(index, process, time.monotonic(), failures)
        log.info("worker %d started (pid %d)", index, process.pid)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Begin a graceful stop: every worker gets `sig` and drains."""
        if not self._stopping.is_set():
            log.info("%s received: stopping %d workers", sig.name, len(self._workers))
        self._stopping.set()
        for worker in self._workers.values():
            if worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def run(self) -> int:
        """Supervise until stopped; the exit code (0 after a clean drain)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig)
        for index in range(self._plan.count):
            await self._spawn(index)
        while not self._stopping.is_set():
            await self._watch_once()
        return await self._drain()

    async def _watch_once(self) -> None:
        waits = {asyncio.ensure_future(w.process.wait()): w for w in self._workers.values()}
        stopping = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
        for future in [*waits, stopping]:
            if future not in done:
                future.cancel()
        for future in done:
            worker = waits.get(future)
            if worker is not None and not self._stopping.is_set():
                await self._exited(worker)

    async def _exited(self, worker: _Worker) -> None:
        code = worker.process.returncode
        if code == EXIT_CONFIG:
            log.error("worker %d exited %d (configuration): stopping", worker.index, code)
            self._fatal = EXIT_CONFIG
            self.stop()
            return
        ran = time.monotonic() - worker.started
        failures = 0 if ran >= _HEALTHY_UPTIME_S else worker.failures + 1
        delay = backoff_s(failures)
        log.error("worker %d (pid %d) exited %s after %.1fs; restarting in %.0fs",
                  worker.index, worker.process.pid, code, ran, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if not self._stopping.is_set():
            await self._spawn(worker.index, failures)

    async def _drain(self) -> int:
        processes = [w.process for w in self._workers.values()]
        try:
            async with asyncio.timeout(self._plan.stop_timeout_s):
                codes = await asyncio.gather(*(p.wait() for p in processes))
        except TimeoutError:
            log.error("workers did not stop within %.0fs: killing them",
                      self._plan.stop_timeout_s)
            for process in processes:
                if process.returncode is None:
                    process.kill()
            codes = await asyncio.gather(*(p.wait() for p in processes))
        bad = [c for c in codes if c != 0]
        if bad:
            log.error("workers exited with %s", bad)
        log.info("all workers stopped")
        return self._fatal or (1 if bad else 0)


async def supervise(plan: WorkerPlan) -> int:
    """Run `plan.count` workers until SIGTERM/SIGINT; the process exit code."""
    return await Supervisor(plan).run()
