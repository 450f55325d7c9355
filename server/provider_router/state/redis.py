"""The `redis://` state store: runtime registrations shared by every replica on one Redis.

Layout (every key under `[state] key_prefix`, default "provider-router:"):
- `<prefix>providers`: a hash, provider name -> the spec as JSON (state/codec.py), API key
  included, exactly as the memory store's file holds it: a registration must survive a
  restart of every replica. Protect Redis accordingly (rediss://, a password, ACLs).
- `<prefix>providers:changes`: a pub/sub channel; each write announces
  `{"origin": <handle id>, "name": ..., "spec": <JSON or null>}` in the same Lua script that
  changes the hash, so announcements arrive in the order the hash changed. A handle drops
  announcements of its own origin: it never hears its own writes.

Pub/sub forgets what it delivered while a subscriber was away, so the follower resyncs each
time its subscription is (re)established: it reads the whole hash and reports every difference
from what this handle last reported. A change made during an outage is therefore applied when
Redis is back. Writes while Redis is down fail with StateUnavailableError (UNAVAILABLE): a
registration that only one replica knows about would silently split the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import orjson
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from provider_router.domain import JsonValue, ProviderSpec
from provider_router.errors import ConfigError, StateUnavailableError
from provider_router.state.base import ChangeCallback, ProviderChange, StoreHealth, Unsubscribe
from provider_router.state.codec import CodecError, decode_spec, encode_spec
from provider_router.state.redis_link import FAILURES, RedisLink, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_KEY_PREFIX = "provider-router:"
"""Where every key of the service lives unless `[state] key_prefix` says otherwise."""

POLL_S = 1.0
"""Longest wait for one pub/sub message before the follower checks whether it should stop."""

RETRY_S = 0.2
"""Pause before subscribing again after the subscription failed (Redis answering pings)."""

KEEPALIVE_S = 5.0
"""A quiet subscription pings Redis this often; no answer by the next ping means it is dead
(a half-open connection, e.g. after a network partition, raises no error by itself)."""

# KEYS: hash, channel. ARGV: name, document, announcement. Replace and announce atomically.
_SAVE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""

# KEYS: hash, channel. ARGV: name, announcement. Announce only a removal that happened.
_DELETE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', KEYS[2], ARGV[2]) end
return removed
"""


class RedisStateStore:
    """The StateStore of every replica sharing one Redis database (and key prefix)."""

    shared = True
    """Other processes write here too; their changes arrive through subscribe()."""

    def __init__(self, link: RedisLink, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._link = link
        self._hash = f"{key_prefix}providers"
        self._channel = f"{key_prefix}providers:changes"
        self._origin = uuid.uuid4().hex
        self._save = link.client.register_script(_SAVE)
        self._delete = link.client.register_script(_DELETE)
        self._callbacks: list[ChangeCallback] = []
        # What this handle last reported (by load, its own writes, or the feed); None until
        # the caller has been told anything, so the first subscription reports nothing old.
        self._known: dict[str, ProviderSpec] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        self._live = asyncio.Event()

    async def load_providers(self) -> tuple[ProviderSpec, ...]:
        """Every registration in Redis, sorted by name; StateUnavailableError when down."""
        try:
            specs = await self._read_all()
        except StateUnavailableError:
            # The caller knows nothing now: once Redis is back, report everything there.
            if self._known is None:
                self._known = {}
            raise
        self._known = dict(specs)
        return tuple(specs[name] for name in sorted(specs))

    async def save_provider(self, spec: ProviderSpec) -> None:
        """Store and announce a registration, replacing any of the same name."""
        doc = encode_spec(spec, include_secret=True)
        await self._call(self._save(keys=[self._hash, self._channel],
                                    args=[spec.name, _dumps(doc), self._announce(spec.name, doc)]))
        self._remember(spec.name, spec)

    async def delete_provider(self, name: str) -> bool:
        """Remove and announce a registration; whether one existed."""
        removed = await self._call(self._delete(keys=[self._hash, self._channel],
                                                args=[name, self._announce(name, None)]))
        self._remember(name, None)
        return bool(removed)

    def subscribe(self, callback: ChangeCallback) -> Unsubscribe:
        """Call `callback` for every change made by other handles, from now on."""
        self._callbacks.append(callback)
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow())

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    async def listening(self) -> None:
        """Return once the feed is live (or its first attempt failed: Redis is down)."""
        if self._follower is not None:
            await self._live.wait()

    async def health(self) -> StoreHealth:
        """Unhealthy while Redis does not answer (the process serves its last known state)."""
        if await self._link.check():
            return StoreHealth(True, f"redis {self._link.name}")
        return StoreHealth(False, f"redis {self._link.name} unreachable ({self._link.last_error}); "
                                  "serving the last known registrations")

    async def aclose(self) -> None:
        """Stop following the feed (the link, shared with others, is closed by its owner;
        a follower also stops by itself once the link is closed)."""
        self._callbacks.clear()
        # The flag as well as the cancel: should a library call swallow the cancellation, the
        # follower still stops within POLL_S instead of keeping aclose() waiting.
        self._stopping = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    # --- Redis calls ------------------------------------------------------------------------

    async def _call(self, command: Awaitable[T]) -> T:
        try:
            result = await command
        except FAILURES as error:
            self._link.failed(error)
            raise StateUnavailableError(
                f"the state backend {self._link.name} is unreachable ({describe(error)}); "
                "registrations cannot change until it is back") from None
        self._link.succeeded()
        return result

    async def _read_all(self, strict: bool = True) -> dict[str, ProviderSpec]:
        # Strict at load (a start refuses a corrupt registry, like the memory store's file);
        # lenient on resync, where one bad entry must not stop every other change.
        raw = await self._call(self._link.client.hgetall(self._hash))
        specs: dict[str, ProviderSpec] = {}
        for key, value in raw.items():
            name = key.decode(errors="replace") if isinstance(key, bytes) else key
            try:
                specs[name] = decode_spec(orjson.loads(value), f"{self._hash}[{name}]")
            except (ValueError, CodecError) as exc:
                if strict:
                    raise ConfigError("state.url", self._link.name,
                                      f"valid registrations in Redis ({exc})") from None
                log.error("ignoring a malformed registration in %s: %s", self._hash, exc)
        return specs

    def _announce(self, name: str, doc: dict[str, JsonValue] | None) -> str:
        return _dumps({"origin": self._origin, "name": name, "spec": doc})

    def _remember(self, name: str, spec: ProviderSpec | None) -> None:
        if self._known is None:
            return
        if spec is None:
            self._known.pop(name, None)
        else:
            self._known[name] = spec

    # --- the follower -----------------------------------------------------------------------

    async def _follow(self) -> None:
        while self._following():
            if not self._link.up:
                self._live.set()  # nobody waits for a feed that is down
            await self._link.wait_up()
            try:
                await self._listen()
            except _Resubscribe:
                continue  # the outage is reported already; start over once the link is up
            except (*FAILURES, StateUnavailableError) as error:
                if not self._following():
                    break
                self._live.set()  # nobody waits for a feed that is down
                if not isinstance(error, StateUnavailableError):  # that one reported it
                    self._link.failed(error)
                await asyncio.sleep(RETRY_S)

    async def _listen(self) -> None:
        outages = self._link.outages
        async with self._link.client.pubsub() as pubsub:
            await pubsub.subscribe(self._channel)
            await self._confirmed(pubsub)
            # Subscribed first, then read: a change lands in the hash read or in the feed.
            await self._resync()
            self._live.set()
            await self._relay(pubsub, outages)

    async def _relay(self, pubsub: PubSub, outages: int) -> None:
        loop = asyncio.get_running_loop()
        next_ping, answered = loop.time() + KEEPALIVE_S, True
        while self._following():
            if self._link.outages != outages:
                # Someone else saw Redis fail (even if it is back already): this connection
                # may be as dead, and quietly so, or have missed announcements meanwhile.
                raise _Resubscribe
            if loop.time() >= next_ping:
                if not answered:
                    raise RedisConnectionError(f"no answer to a ping in {KEEPALIVE_S:g}s")
                await pubsub.ping()
                next_ping, answered = loop.time() + KEEPALIVE_S, False
            message = await pubsub.get_message(timeout=POLL_S)
            if message is None:
                continue
            if message.get("type") == "pong":
                answered = True
            elif message.get("type") == "message":
                self._on_message(message["data"])

    async def _confirmed(self, pubsub: PubSub) -> None:
        # SUBSCRIBE is only sent; until Redis confirms it, a change may be published unheard.
        while self._following():
            message = await pubsub.get_message(timeout=POLL_S)
            if message is not None and message.get("type") == "subscribe":
                return

    def _following(self) -> bool:
        return not (self._stopping or self._link.closed)

    async def _resync(self) -> None:
        current = await self._read_all(strict=False)
        known, self._known = self._known, dict(current)
        if known is None:
            return
        for name in sorted(known.keys() | current.keys()):
            if known.get(name) != current.get(name):
                self._emit(ProviderChange(name, current.get(name)))

    def _on_message(self, data: bytes) -> None:
        try:
            doc = orjson.loads(data)
            if doc["origin"] == self._origin:
                return
            name = str(doc["name"])
            spec = None if doc["spec"] is None else decode_spec(doc["spec"], f"change[{name}]")
        except (ValueError, KeyError, TypeError, CodecError) as exc:
            log.error("ignoring a malformed change on %s: %s", self._channel, exc)
            return
        if self._known is not None and self._known.get(name) == spec:
            return  # the resync read already reported it (published between SUBSCRIBE and read)
        self._remember(name, spec)
        self._emit(ProviderChange(name, spec))

    def _emit(self, change: ProviderChange) -> None:
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception:
                log.exception("state change subscriber failed on provider %s", change.name)


class _Resubscribe(Exception):
    """The link had an outage since this subscription began: subscribe again and resync."""


def _dumps(doc: object) -> str:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()

