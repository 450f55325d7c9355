"""Admission operations sent to Redis in batches, one Lua script call per batch.

Each admission on its own would cost a round trip, a system call each way and redis-py's
per-command work, which measured more than the rest of a request on the Redis path. So the
global limits queue their operations here, and one sender task keeps at most one batch in
flight: what was queued while a batch was out goes in the next one. Batches grow with the
load (one round trip for many admissions) and an idle router waits for nothing. Redis runs
a script atomically, so every operation is still decided atomically against the global
counters, in queue order; only the round trip is shared. Operations:

- `T` take: every charge of a call or none (GCRA, see redis_limits.py); answers the wait.
- `C` credit: give back (or charge a debt to) one GCRA bucket.
- `E` enter: take a concurrency slot (see redis_concurrency.py); answers 1 or 0.
- `L` leave: give back concurrency slots.

Every operation is answered within the link's budget (`[state] timeout`) of being queued:
when Redis has not answered by then every operation of the batch answers None, which
callers treat as "decide locally".
The call itself is not cancelled (redis-py would drop the connection): it finishes in the
background. A call that fails, at once or late (the link's own socket timeout is 1 s), marks
the link down, and everything is decided locally until Redis answers again. A batch that is
merely late does not: on a busy event loop the budget is mostly spent waiting for the loop,
not for Redis, and going down on each would flap. Keys travel in KEYS, deduplicated,
referenced by index.
"""

from __future__ import annotations

import asyncio

from provider_router.state.redis_link import FAILURES, RedisLink

# KEYS[1]: the replicas' liveness set. ARGV[1]: this replica, ARGV[2]: lease seconds,
# ARGV[3]: the number of operations; then each operation (see the module docstring).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local me = ARGV[1]
local lease = tonumber(ARGV[2])
local out = {}
local alive_marked = false
local i = 4

local function take(n)
  local wait = 0
  local tats = {}
  for c = 0, n - 1 do
    local at = i + 4 * c
    local key = KEYS[tonumber(ARGV[at])]
    local interval = tonumber(ARGV[at + 1])
    local tau = tonumber(ARGV[at + 2])
    local cost = tonumber(ARGV[at + 3])
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local over = new_tat - tau - now
    -- A microsecond of slack absorbs floating-point error at the exact boundary.
    if over > wait and over > 0.000001 then wait = over end
    tats[c] = new_tat
  end
  if wait > 0 then return tostring(wait) end
  for c = 0, n - 1 do
    local key = KEYS[tonumber(ARGV[i + 4 * c])]
    local ttl = math.ceil((tats[c] - now) * 1000) + 1000
    redis.call('SET', key, string.format('%.17g', tats[c]), 'PX', ttl)
  end
  return '0'
end

local function credit(key, interval, tau, cost)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tat = tat - cost * interval
  if tat < now then tat = now end
  if tat > now + 2 * tau then tat = now + 2 * tau end
  if tat <= now then
    redis.call('DEL', key)
  else
    local ttl = math.ceil((tat - now) * 1000) + 1000
    redis.call('SET', key, string.format('%.17g', tat), 'PX', ttl)
  end
  return 1
end

local function enter(key, limit)
  if not alive_marked then
    redis.call('ZADD', KEYS[1], now, me)
    alive_marked = true
  end
  local all = redis.call('HGETALL', key)
  local total = 0
  for f = 1, #all, 2 do
    local count = tonumber(all[f + 1])
    if all[f] ~= me then
      local seen = redis.call('ZSCORE', KEYS[1], all[f])
      if (not seen) or now - tonumber(seen) > lease then
        redis.call('HDEL', key, all[f])
        count = 0
      end
    end
    total = total + count
  end
  if total >= limit then return 0 end
  redis.call('HINCRBY', key, me, 1)
  return 1
end

local function leave(key, count)
  if redis.call('HINCRBY', key, me, -count) <= 0 then redis.call('HDEL', key, me) end
  return 1
end

for op = 1, tonumber(ARGV[3]) do
  local kind = ARGV[i]
  i = i + 1
  if kind == 'T' then
    local n = tonumber(ARGV[i])
    i = i + 1
    out[op] = take(n)
    i = i + 4 * n
  elseif kind == 'C' then
    out[op] = credit(KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
                     tonumber(ARGV[i + 3]))
    i = i + 4
  elseif kind == 'E' then
    out[op] = enter(KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1]))
    i = i + 2
  else
    out[op] = leave(KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1]))
    i = i + 2
  end
end
return out
"""


Answer = bytes | int | None
"""An operation's answer: text for takes, 1/0 for the rest; None when decided locally."""


LINGER_S = 0.002
"""Shortest time between two batches while there is load (at most 40% of the budget)."""


class _Op:
    """One queued operation: its words (key names in place of indexes) and its future."""

    __slots__ = ("future", "keys", "words")

    def __init__(self, words: list[str | float | int], keys: list[str],
                 future: asyncio.Future[Answer]) -> None:
        self.words = words
        self.keys = keys
        self.future = future


class AdmissionBatch:
    """Queues admission operations and sends each event-loop turn's as one script call."""

    def __init__(self, link: RedisLink, timeout_s: float, replica_id: str, alive_key: str,
                 lease_s: float) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self._head = [replica_id, f"{lease_s:.3f}"]
        self._alive_key = alive_key
        self._script = link.client.register_script(_SCRIPT)
        self._queue: list[_Op] = []
        self._sender: asyncio.Task[None] | None = None
        self._since = 0.0
        # At most one batch per linger_s while busy; well within the budget.
        self._linger_s = min(LINGER_S, timeout_s * 0.4)

    @property
    def link(self) -> RedisLink:
        """The link the batch is sent on."""
        return self._link

    def submit(self, words: list[str | float | int], keys: list[str]
               ) -> asyncio.Future[Answer]:
        """Queue an operation: its words, with `key_ref(n)` standing for `keys[n]`. The
        future answers once the batch ran (None: Redis did not answer in time)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        if not self._queue:
            self._since = loop.time()  # the budget runs from the oldest waiting operation
        self._queue.append(_Op(words, keys, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        return future

    async def _send(self) -> None:
        # One batch in flight at a time: operations queued meanwhile go out together when it
        # returns, so batches grow with the load (one round trip for many admissions) and
        # an idle router adds no wait at all.
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                ops, self._queue = self._queue, []
                sent_at = loop.time()
                await self._run(ops, self._since + self._timeout_s)
                # Under load, linger so the next batch gathers more than one call's worth;
                # an idle router never waits (the queue is empty, the loop ends).
                pause = sent_at + self._linger_s - loop.time()
                if self._queue and pause > 0.0:
                    await asyncio.sleep(pause)
        finally:
            self._sender = None
            for op in self._queue:  # only left when cancelled (shutdown)
                op.future.set_result(None)
            self._queue = []

    async def _run(self, ops: list[_Op], deadline: float) -> None:
        """Send one batch; answer every operation by `deadline` (loop time)."""
        keys: list[str] = [self._alive_key]
        index: dict[str, int] = {self._alive_key: 1}
        args: list[str | float | int] = [*self._head, len(ops)]
        for op in ops:
            positions = []
            for key in op.keys:
                position = index.get(key)
                if position is None:
                    keys.append(key)
                    position = index[key] = len(keys)
                positions.append(position)
            args += [positions[w] if isinstance(w, _KeyRef) else w for w in op.words]
        answers: list[Answer] = [None] * len(ops)
        call = asyncio.ensure_future(self._script(keys=keys, args=args))
        try:
            async with asyncio.timeout_at(deadline):
                # Shielded: a late answer must not cancel the command, which would make
                # redis-py drop the connection (and a busy loop would then reconnect often).
                answers = await asyncio.shield(call)
        except TimeoutError:
            # Over budget: this batch is decided locally; the call finishes in the
            # background, and marks the link down only if it fails.
            call.add_done_callback(self._late)
        except FAILURES as error:
            self._link.failed(error)
        finally:
            # Also when cancelled (shutdown): no caller may wait forever.
            for op, answer in zip(ops, answers, strict=True):
                if not op.future.done():
                    op.future.set_result(answer)

    def _late(self, call: asyncio.Future[list[Answer]]) -> None:
        if call.cancelled():
            return
        error = call.exception()
        if error is not None:
            self._link.failed(error)


class _KeyRef(int):
    """A word that stands for the n-th key of its operation (replaced by its KEYS index)."""


def key_ref(n: int) -> _KeyRef:
    """The word standing for an operation's n-th key."""
    return _KeyRef(n)
