"""Shared circuit breakers: a breaker opened by one replica is open on all, and one replica
at a time sends the half-open trial.

Each process keeps its own `ProviderBreakers` (the hot path never waits for Redis); this
layer keeps them in step through one Redis hash, `<prefix>breakers`, field
"provider<US>model" (model "" for per-provider breakers), value "stamp|state|until":
- a local transition to OPEN or CLOSED is written at once (stamp = Redis `TIME` in
  microseconds, so the newest write wins across replicas and across a Redis restart; until =
  Redis time when the trial is due);
- every replica reads the whole hash every `poll_s` (0.5 s) and applies records newer than
  the last it saw: open for the time left, or closed. An opening therefore reaches every
  replica within about half a second.
- the half-open trial needs a Redis lock (`SET NX PX`, `<prefix>breaker-trial:<field>`, TTL
  `trial_ttl_s`); the breaker's trial gate refuses the trial until this replica holds it, and
  the lock is released when the trial ends. A replica that dies mid-trial frees it by TTL.

While Redis is down every breaker runs on its own (the gate lets local trials through) from
the last state it had; on reconnect the replica writes its breakers that are not closed and
reads the hash again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from provider_router.domain import BreakerState
from provider_router.resilience.breaker import BreakerChange, ProviderBreakers
from provider_router.state.redis_link import FAILURES, RedisLink

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(provider, model or "")."""

_SEP = "\x1f"

# KEYS[1]: the hash. ARGV: field, state, seconds until the trial is due.
_WRITE = """
local t = redis.call('TIME')
local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
local due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], stamp .. '|' .. ARGV[2] .. '|' .. string.format('%.3f', due))
return stamp
"""

# KEYS[1]: the lock. ARGV[1]: its owner. Deletes it only when this replica still owns it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


LOCK_RETRY_S = 0.5
"""How long a replica that lost the trial lock waits before asking again."""


def field_of(key: Key) -> str:
    """The hash field of a breaker key."""
    return f"{key[0]}{_SEP}{key[1]}"


def key_of(field: str) -> Key:
    """The breaker key of a hash field."""
    provider, _, model = field.partition(_SEP)
    return provider, model


class SharedBreakers:
    """Keeps this process's breakers in step with every other replica's, through Redis."""

    def __init__(self, link: RedisLink, breakers: ProviderBreakers, key_prefix: str, *,
                 poll_s: float = 0.5, trial_ttl_s: float = 30.0,
                 replica_id: str | None = None) -> None:
        self._link = link
        self._breakers = breakers
        self._hash = f"{key_prefix}breakers"
        self._lock_prefix = f"{key_prefix}breaker-trial:"
        self._poll_s = poll_s
        self._trial_ttl_ms = int(trial_ttl_s * 1000)
        self._me = replica_id or uuid.uuid4().hex
        self._write = link.client.register_script(_WRITE)
        self._unlock = link.client.register_script(_UNLOCK)
        self._seen: dict[Key, int] = {}          # newest stamp applied or written, per key
        self._local: dict[Key, BreakerState] = {}  # this process's state, from transitions
        self._held: dict[Key, float] = {}        # trial locks held: key -> local expiry
        self._asked: dict[Key, float] = {}       # key -> when a lost lock may be asked again
        self._applying: Key | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], None] | None = None

    def start(self) -> None:
        """Listen to local transitions, gate trials, and start polling (inside the loop)."""
        self._stop_listening = self._breakers.add_listener(self._changed)
        self._breakers.set_trial_gate(self.may_trial)
        self._link.add_reconnect_listener(self.resync)
        self._poller = asyncio.get_running_loop().create_task(
            self._link.every(self._poll_s, self.poll))

    async def aclose(self) -> None:
        """Stop polling and writing; the breakers keep running locally."""
        if self._stop_listening is not None:
            self._stop_listening()
        self._breakers.set_trial_gate(None)
        tasks = [*self._tasks, *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- local -> Redis ----------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self, change: BreakerChange) -> None:
        """A local breaker moved: record it and, unless Redis told us, tell Redis."""
        key = (change.provider, change.model)
        self._local[key] = change.new
        if self._applying == key or change.new is BreakerState.HALF_OPEN:
            return  # an adopted state, or our own trial starting (the lock already says so)
        open_for = self._breakers.open_for(*key) if change.new is BreakerState.OPEN else 0.0
        with contextlib.suppress(RuntimeError):  # no running loop: a synchronous test caller
            self._spawn(self._publish(key, change.new, open_for))

    async def _publish(self, key: Key, state: BreakerState, open_for_s: float) -> None:
        if not self._link.up:
            return  # resync writes it when Redis is back
        try:
            stamp = await self._write(keys=[self._hash],
                                      args=[field_of(key), state.value, f"{open_for_s:.3f}"])
            self._seen[key] = max(self._seen.get(key, 0), int(stamp))
            if key in self._held:
                del self._held[key]
                await self._unlock(keys=[self._lock_prefix + field_of(key)], args=[self._me])
        except FAILURES as error:
            self._link.failed(error)

    # --- the trial lock ----------------------------------------------------------------------

    def may_trial(self, provider: str, model: str) -> bool:
        """The breakers' trial gate: True once this replica holds the trial lock."""
        if not self._link.up:
            return True
        key = (provider, model)
        now = time.monotonic()
        held = self._held.get(key)
        if held is not None and held > now:
            return True
        if self._asked.get(key, 0.0) <= now:
            self._asked[key] = now + LOCK_RETRY_S
            self._spawn(self._take_lock(key))
        return False

    async def _take_lock(self, key: Key) -> None:
        try:
            won = await self._link.client.set(self._lock_prefix + field_of(key), self._me,
                                              nx=True, px=self._trial_ttl_ms)
        except FAILURES as error:
            self._link.failed(error)
            return
        if won:
            self._held[key] = time.monotonic() + self._trial_ttl_ms / 1000.0
            self._asked.pop(key, None)

    # --- Redis -> local ----------------------------------------------------------------------

    async def poll(self) -> None:
        """Read every shared breaker once and adopt what changed elsewhere."""
        try:
            pipe = self._link.client.pipeline(transaction=False)
            pipe.time()
            pipe.hgetall(self._hash)
            (seconds, micros), records = await pipe.execute()
        except FAILURES as error:
            self._link.failed(error)
            return
        now = seconds + micros / 1e6
        for raw_field, raw_value in records.items():
            self._adopt(key_of(raw_field.decode()), raw_value.decode(), now)

    def _adopt(self, key: Key, value: str, now: float) -> None:
        stamp_text, state_text, due_text = value.split("|")
        stamp = int(stamp_text)
        if stamp <= self._seen.get(key, 0):
            return
        self._seen[key] = stamp
        state = BreakerState(state_text)
        if state is BreakerState.CLOSED and self._local.get(key, BreakerState.CLOSED) \
                is BreakerState.CLOSED:
            return
        self._applying = key
        try:
            self._breakers.apply(key[0], key[1], state, max(0.0, float(due_text) - now))
        finally:
            self._applying = None
        log.info("breaker of %s%s: %s on another replica", key[0],
                 f"/{key[1]}" if key[1] else "", state.value)

    async def resync(self) -> None:
        """After an outage: write our breakers that are not closed, then read everyone's."""
        for key, state in list(self._local.items()):
            if state is BreakerState.OPEN:
                await self._publish(key, state, self._breakers.open_for(*key))
        await self.poll()
