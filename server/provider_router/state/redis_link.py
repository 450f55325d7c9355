"""The one connection of a process to Redis, and whether Redis is up right now.

Everything that keeps state in Redis (the registry store, shared breakers, global limits,
merged stats) shares one `RedisLink`: one `redis.asyncio.Redis` client (one connection pool)
and one view of the backend's health. A caller whose Redis command fails calls `failed(error)`;
the link is then down, says so once at warning level (not once per failed request: an outage
under load would flood the log), sets `provider_router_state_backend_up` to 0 and pings in the
background until Redis answers again. Then it is up, and every reconnect listener runs, so
each user resyncs what it missed (a change announced while we were away is lost on pub/sub).

Timeouts are short on purpose: a state backend that takes seconds to answer must not hold up
requests; callers on the hot path add their own, tighter budget (`[state] timeout`). Commands
are not retried by redis-py: a failure is reported at once and the watcher takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Protocol

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from provider_router.state.urls import check_redis_url, redacted

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 1.0
"""Longest wait for one reply; the hot path uses a far tighter budget of its own."""

CONNECT_TIMEOUT_S = 1.0
"""Longest wait to open a connection (a blackholed Redis must not hang a caller for long)."""

WATCH_INTERVAL_S = 0.5
"""How often a down link pings Redis to see whether it is back."""

FAILURES = (redis.RedisError, OSError, TimeoutError)
"""What a Redis call can end with that means "Redis is not answering" (redis-py's errors,
sockets, a caller's own timeout): mark the link down and decide locally."""

ReconnectListener = Callable[[], Awaitable[None]]
"""Runs after the link comes back from an outage, to resync what was missed."""

StatusListener = Callable[[bool], Awaitable[None]]
"""Told each time the link goes down (False) or comes back up (True), e.g. the health service."""


class UpGauge(Protocol):
    """The part of a prometheus_client Gauge the link drives (1 up, 0 down)."""

    def set(self, value: float) -> None:
        """Set the gauge."""
        ...


class RedisLink:
    """One Redis client for the process, and whether the backend is up."""

    def __init__(self, client: redis.Redis, name: str, gauge: UpGauge | None = None,
                 watch_interval_s: float = WATCH_INTERVAL_S) -> None:
        self.client = client
        """The shared `redis.asyncio.Redis` (its pool serves every user of the link)."""
        self.name = name
        """The backend's URL without credentials, for logs and health details."""
        self.up = True
        """False from a failure until Redis answers again; read freely on the hot path."""
        self.outages = 0
        """Outages so far: a user that saw a different count earlier missed one."""
        self.last_error = ""
        """What the last outage was (type and message; never a secret); empty when up."""
        self._gauge = gauge
        self._watch_interval_s = watch_interval_s
        self._listeners: list[ReconnectListener] = []
        self._status_listeners: list[StatusListener] = []
        self._watcher: asyncio.Task[None] | None = None
        self._resyncs: set[asyncio.Task[None]] = set()
        self._back = asyncio.Event()
        self._back.set()
        self._closed = False
        if gauge is not None:
            gauge.set(1.0)

    @classmethod
    def from_url(cls, url: str, password: str | None, gauge: UpGauge | None = None, *,
                 socket_timeout_s: float = SOCKET_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 watch_interval_s: float = WATCH_INTERVAL_S) -> RedisLink:
        """A link to `url` (`redis://host:port/db`, or `rediss://` for TLS).

        TLS verifies the server's certificate and host name against the system's trust store
        (which `SSL_CERT_FILE` / `SSL_CERT_DIR` override, as for any OpenSSL program).
        """
        check_redis_url(url)
        client = redis.Redis.from_url(
            url, password=password or None,
            socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s,
            # No silent retries: a failure reaches the caller at once and the watcher pings.
            retry=Retry(NoBackoff(), 0), retry_on_error=[],
            health_check_interval=0, decode_responses=False,
            client_name="provider-router")
        return cls(client, redacted(url), gauge, watch_interval_s)

    def add_reconnect_listener(self, callback: ReconnectListener) -> None:
        """Run `callback()` each time the link comes back after an outage."""
        self._listeners.append(callback)

    def add_status_listener(self, callback: StatusListener) -> None:
        """Run `callback(up)` each time the link goes down or comes back."""
        self._status_listeners.append(callback)

    def failed(self, error: BaseException) -> None:
        """A command failed: mark the link down (logged once per outage) and start watching."""
        if not self.up or self._closed:
            return
        self.up = False
        self.outages += 1
        self._back.clear()
        self.last_error = describe(error)
        if self._gauge is not None:
            self._gauge.set(0.0)
        log.warning("state backend %s is unreachable (%s): serving from the last known "
                    "state until it is back", self.name, self.last_error)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        self._spawn(self._tell(False))

    def succeeded(self) -> None:
        """A command worked: if the link was down, it is up again (and resyncs)."""
        if self.up or self._closed:
            return
        self.up = True
        self.last_error = ""
        self._back.set()
        if self._gauge is not None:
            self._gauge.set(1.0)
        log.warning("state backend %s is reachable again: resyncing", self.name)
        self._spawn(self._resync())
        self._spawn(self._tell(True))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _tell(self, up: bool) -> None:
        for listener in list(self._status_listeners):
            try:
                await listener(up)
            except Exception:
                log.exception("state backend status listener %r failed", listener)

    @property
    def closed(self) -> bool:
        """Whether aclose() was called (users stop their background work)."""
        return self._closed

    async def wait_up(self) -> None:
        """Return once the link is up (at once when it is)."""
        await self._back.wait()

    async def every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` every `interval_s` while the link is up, until cancelled (a down link
        skips its turns: reconnect listeners resync once it is back)."""
        while True:
            await asyncio.sleep(interval_s)
            if self.up:
                await job()

    async def check(self) -> bool:
        """Ping Redis now and record the result; whether it answered."""
        try:
            await self.client.ping()
        except FAILURES as error:
            self.failed(error)
            return False
        self.succeeded()
        return True

    async def _watch(self) -> None:
        while not self.up and not self._closed:
            await asyncio.sleep(self._watch_interval_s)
            # The answer flips the link up through succeeded(); a failure keeps it down.
            with contextlib.suppress(*FAILURES):
                await self.client.ping()
                self.succeeded()

    async def _resync(self) -> None:
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception as error:
                # The listener's own Redis calls mark the link down again when they fail;
                # anything else is a bug worth a traceback, not a reason to skip the others.
                if isinstance(error, FAILURES):
                    self.failed(error)
                else:
                    log.exception("resync listener %r failed", listener)

    async def aclose(self) -> None:
        """Stop watching, let running resyncs finish, and close every connection."""
        self._closed = True
        self._back.set()
        tasks = [t for t in (self._watcher, *self._resyncs) if t is not None]
        if self._watcher is not None:
            self._watcher.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()


def describe(error: BaseException) -> str:
    """A failure in one line: its type and message (redis-py never puts a password there)."""
    text = str(error).strip() or "no detail"
    return f"{type(error).__name__}: {text}"
