"""Circuit breakers per provider (or per provider+model): pybreaker's state machine, async-safe.

pybreaker 1.4.1 was written for synchronous calls. Four of its behaviours are wrong for an
async router; tests/unit/resilience/test_pybreaker_facts.py pins each one:

1. `breaker.call(async_fn)` and the decorator return the coroutine unawaited, so its failure
   is never counted; `call_async` needs Tornado. `with breaker.calling(): await ...` counts.
2. Half-open admits every concurrent call: a recovering provider gets the whole herd at once.
3. Errors listed in `exclude` count as successes and reset the failure counter.
4. `calling()` catches BaseException, so a cancelled call (caller deadline or disconnect)
   counts as a provider failure.

So this wrapper admits calls itself (one trial in half-open) and, once a call has finished,
replays its verdict through `calling()` in a synchronous block: success, failure, or nothing
at all for caller errors and cancellation, which `exclude` cannot express. pybreaker keeps
the state machine, the storage and the listener protocol; the wrapper adds a failure window
(failures older than `window_s` are forgotten) and a ramp after the breaker closes.

Open → half-open is timed on the injected clock, not on pybreaker's wall clock: the wrapper
moves the breaker to half-open itself and never calls through an open pybreaker breaker.
The wait adapts: `reset_initial_s` after the breaker opens, doubled after each failed trial,
capped at `reset_timeout_s`, so a provider that recovers quickly gets traffic back within
seconds and one that stays down is probed less and less often.

Keys. With `per_model` (the default) each (provider, model) has its own breaker, so one sick
model of a provider that serves many never takes the others down; beside them, one
provider-level breaker (key (provider, "")) counts only connection-level failures (DNS,
refused, TLS, connect timeout), which no model of that provider could escape. Every call
passes both. Rate limits (429, quota) count for neither: they are the cooldown book's
(resilience/cooldown.py). Without `per_model` there is one breaker per provider for everything.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import pybreaker

from provider_router.domain import AttemptOutcome, BreakerState, ExclusionReason
from provider_router.errors import ProviderError
from provider_router.resilience.retry import grown

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds on a monotonic clock; injected so tests never sleep."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When breakers open, how long they stay open, and how traffic ramps back."""

    fail_max: int = 3
    window_s: float = 60.0
    # The longest open → half-open wait; the first one is reset_initial_s.
    reset_timeout_s: float = 30.0
    per_model: bool = True
    ramp_s: float = 30.0
    ramp_floor: float = 0.1
    reset_initial_s: float = 2.0

    def __post_init__(self) -> None:
        if self.fail_max < 1:
            raise ValueError("fail_max must be at least 1")
        if (self.window_s <= 0 or self.reset_timeout_s < 0 or self.ramp_s < 0
                or self.reset_initial_s < 0):
            raise ValueError("window_s must be > 0; reset_timeout_s, reset_initial_s and "
                             "ramp_s >= 0")
        if not 0.0 < self.ramp_floor <= 1.0:
            raise ValueError("ramp_floor must be in (0, 1]")

    def reset_after(self, failed_trials: int) -> float:
        """The open → half-open wait after `failed_trials` failed trials in a row."""
        first = min(self.reset_initial_s, self.reset_timeout_s)
        return grown(first, 2.0, failed_trials, self.reset_timeout_s)


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A breaker moved between states; `model` is "" when breakers are per provider."""

    provider: str
    model: str
    old: BreakerState
    new: BreakerState
    at: float


BreakerListener = Callable[[BreakerChange], None]
"""Receives every state change (logs, metrics, ListProviders, per-provider health)."""

TrialGate = Callable[[str, str], bool]
"""Whether this process may send a due half-open trial for (provider, model-or-""); when it
answers False the breaker stays open (another replica holds the trial)."""

TRIAL_ELSEWHERE_S = 0.5
"""The retry hint of a call refused because another replica runs the trial."""


class BreakerOpenError(ProviderError):
    """The breaker cannot admit this call now: skip to the next candidate."""

    reason = "BREAKER_OPEN"
    outcome = AttemptOutcome.SKIPPED
    retryable = False

    def __init__(self, provider: str, model: str, retry_after_s: float | None = None) -> None:
        what = "trial call in flight" if retry_after_s is None else "circuit breaker open"
        super().__init__(provider, f"{what} for {model or 'every model'}",
                         retry_after_s=retry_after_s)
        self.model = model


class Verdict(enum.Enum):
    """How a finished call counts for its breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


def verdict_of(error: BaseException | None) -> Verdict:
    """Success, provider failure, or neutral (caller error, skip, cancellation)."""
    if error is None:
        return Verdict.SUCCESS
    if not isinstance(error, Exception):
        # CancelledError, GeneratorExit: the caller left, which says nothing about the provider.
        return Verdict.NEUTRAL
    if isinstance(error, ProviderError) and (
            error.caller_error or error.outcome in _NO_HEALTH_SIGNAL):
        # The request's own fault, a provider never called, or a rate limit (the cooldown
        # book's business): no health signal either way.
        return Verdict.NEUTRAL
    return Verdict.FAILURE


_NO_HEALTH_SIGNAL = frozenset({AttemptOutcome.SKIPPED, AttemptOutcome.RATE_LIMITED})


def reachability_of(error: BaseException | None) -> Verdict:
    """The verdict for a provider-level breaker: only connection-level failures count;
    any answer at all (even an error) shows the provider reachable."""
    verdict = Verdict.SUCCESS if error is None else verdict_of(error)
    if verdict is Verdict.FAILURE and not getattr(error, "connection_level", False):
        return Verdict.SUCCESS
    return verdict


def _state_of(name: str) -> BreakerState:
    # pybreaker spells half-open with a hyphen; BreakerState with an underscore.
    return BreakerState(name.replace("-", "_"))


class _Replay(Exception):
    """Carries a failure verdict into pybreaker's `calling()` block."""


@dataclass(frozen=True, slots=True)
class _Permit:
    epoch: int
    trial: bool


class _Transitions(pybreaker.CircuitBreakerListener):
    """Forwards pybreaker's state changes to the wrapper that owns the breaker."""

    def __init__(self, owner: _Breaker) -> None:
        self._owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker,
                     old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        """Record a transition; always called under the owner's lock."""
        old = _state_of(old_state.name) if old_state is not None else BreakerState.CLOSED
        self._owner.changed(old, _state_of(new_state.name))


class _Breaker:
    """One pybreaker breaker plus what it lacks: a failure window, one trial, a ramp."""

    def __init__(self, provider: str, model: str, config: BreakerConfig, clock: Clock,
                 notify: BreakerListener, gate: TrialGate | None = None) -> None:
        self._provider = provider
        self.gate = gate
        self._model = model
        self._config = config
        self._clock = clock
        self._notify = notify
        # Every pybreaker call happens under this lock, so the listener can update fields.
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        # Bumped on every transition: a call admitted in an earlier state has no say.
        self._epoch = 0
        self._trial = False
        self._opened_at: float | None = None
        self._closed_at: float | None = None
        # Trials that failed since the breaker last opened from closed: each doubles the wait.
        self._failed_trials = 0
        self._pending: list[BreakerChange] = []
        # Every call admitted while closed in this epoch shares one permit.
        self._closed_permit = _Permit(self._epoch, trial=False)
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        # throw_new_error_on_trip=False: the caller sees the provider's error, not pybreaker's.
        self._cb = pybreaker.CircuitBreaker(
            fail_max=config.fail_max, reset_timeout=config.reset_timeout_s,
            listeners=[_Transitions(self)], state_storage=self._storage,
            name=f"{provider}/{model}" if model else provider, throw_new_error_on_trip=False)

    # --- reads: lock-free, for the planner's gate ------------------------------------------

    def state(self) -> BreakerState:
        """The state as pybreaker stores it (open until a trial starts)."""
        return _state_of(self._storage.state)

    def open_for(self, now: float) -> float:
        """Seconds until an open breaker may admit its trial; 0.0 when it may now."""
        opened = self._opened_at
        if opened is None:
            return 0.0
        return max(0.0, opened + self._config.reset_after(self._failed_trials) - now)

    def allows(self, now: float) -> bool:
        """Whether `admit` would let a call through now."""
        state = self._storage.state
        if state == pybreaker.STATE_CLOSED:
            return True
        if state == pybreaker.STATE_HALF_OPEN:
            return not self._trial
        return self.open_for(now) <= 0.0 and self._may_trial()

    def _may_trial(self) -> bool:
        gate = self.gate
        return gate is None or gate(self._provider, self._model)

    def allows_now(self) -> bool:
        """`allows` at the current time; the clock is read only when the breaker is not
        closed, which is the planner's common case."""
        if self._storage.state == pybreaker.STATE_CLOSED:
            return True
        return self.allows(self._clock())

    def admission_fraction(self, now: float) -> float:
        """Share of traffic to send: 0 or 1 when not closed, ramping up after closing."""
        if self._storage.state != pybreaker.STATE_CLOSED:
            # A due trial gets 1.0 so that down-weighting never starves the probe that heals it.
            return 1.0 if self.allows(now) else 0.0
        closed_at, ramp_s = self._closed_at, self._config.ramp_s
        if closed_at is None or ramp_s <= 0 or now - closed_at >= ramp_s:
            return 1.0
        floor = self._config.ramp_floor
        return floor + (1.0 - floor) * max(0.0, now - closed_at) / ramp_s

    # --- writes -----------------------------------------------------------------------------

    def admit(self) -> _Permit:
        """A permit for one call, or BreakerOpenError."""
        with self._lock:
            if self._storage.state == pybreaker.STATE_CLOSED:
                # The common case: no clock read, no state-machine walk, a shared permit.
                return self._closed_permit
            permit, wait = self._admit_locked(self._clock())
        self._flush()
        if permit is None:
            raise BreakerOpenError(self._provider, self._model, wait)
        return permit

    def _admit_locked(self, now: float) -> tuple[_Permit | None, float | None]:
        state = self._sync()
        if state is BreakerState.OPEN:
            wait = self.open_for(now)
            if wait > 0.0:
                return None, wait
            if not self._may_trial():
                return None, TRIAL_ELSEWHERE_S
            self._cb.half_open()
            state = BreakerState.HALF_OPEN
        if state is BreakerState.HALF_OPEN:
            if self._trial:
                return None, None
            self._trial = True
            return _Permit(self._epoch, trial=True), None
        return self._closed_permit, None

    def _sync(self) -> BreakerState:
        # pybreaker's `state` property notices a change made through shared storage and
        # notifies listeners, which bumps the epoch; `current_state` alone would not.
        return _state_of(self._cb.state.name)

    def record(self, permit: _Permit, error: BaseException | None) -> None:
        """Count a finished call per its verdict."""
        # verdict_of(None) without the call: most calls succeed.
        self.record_verdict(permit, Verdict.SUCCESS if error is None else verdict_of(error))

    def record_verdict(self, permit: _Permit, verdict: Verdict) -> None:
        """Count a finished call whose verdict the caller has decided."""
        with self._lock:
            if (verdict is Verdict.SUCCESS and permit is self._closed_permit
                    and not self._failures and self._storage.state == pybreaker.STATE_CLOSED):
                # A success while closed with nothing counted changes nothing: pybreaker
                # would only reset a counter that is already zero.
                return
            self._record_locked(permit, verdict, self._clock())
        self._flush()

    def _record_locked(self, permit: _Permit, verdict: Verdict, now: float) -> None:
        self._sync()
        if permit.epoch != self._epoch:
            return  # admitted in an earlier state; the transition already released any trial
        if permit.trial:
            # A neutral trial frees the slot: the next call becomes the trial.
            self._trial = False
        if verdict is Verdict.SUCCESS:
            self._failures.clear()
            with self._cb.calling():
                pass
        elif verdict is Verdict.FAILURE:
            self._count_failure(now)

    def _count_failure(self, now: float) -> None:
        horizon = now - self._config.window_s
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()
        self._failures.append(now)
        # pybreaker counts consecutive failures regardless of age; align its counter with the
        # window (it adds the current one itself), so it trips on fail_max within window_s.
        self._storage.reset_counter()
        for _ in range(len(self._failures) - 1):
            self._storage.increment_counter()
        with contextlib.suppress(_Replay), self._cb.calling():
            raise _Replay

    def force(self, state: BreakerState, open_for_s: float) -> None:
        """Take a state decided elsewhere (another replica): OPEN for `open_for_s` more
        seconds, or CLOSED. Listeners hear the transition like any other."""
        with self._lock:
            current = self._sync()
            if state is BreakerState.CLOSED:
                if current is not BreakerState.CLOSED:
                    self._cb.close()
            else:
                if current is not BreakerState.OPEN:
                    self._cb.open()
                # So that open_for() answers open_for_s, whatever wait this breaker is at.
                wait = self._config.reset_after(self._failed_trials)
                self._opened_at = self._clock() - wait + open_for_s
        self._flush()

    def changed(self, old: BreakerState, new: BreakerState) -> None:
        """pybreaker moved states (caller holds the lock)."""
        now = self._clock()
        self._epoch += 1
        self._closed_permit = _Permit(self._epoch, trial=False)
        self._trial = False
        self._failures.clear()
        if new is BreakerState.OPEN:
            self._opened_at = now
            self._failed_trials = self._failed_trials + 1 if old is BreakerState.HALF_OPEN else 0
        elif new is BreakerState.CLOSED:
            self._failed_trials = 0
            self._closed_at = now if old is BreakerState.HALF_OPEN else None
        self._pending.append(BreakerChange(self._provider, self._model, old, new, now))

    def _flush(self) -> None:
        # Listeners run outside the lock so they may read breakers (or log slowly) safely.
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        for change in pending:
            self._notify(change)


class Guard:
    """One guarded call (a class, not a generator context: it runs on every attempt)."""

    __slots__ = ("_breaker", "_permit")

    def __init__(self, breaker: _Breaker) -> None:
        self._breaker = breaker

    def __enter__(self) -> None:
        self._permit = self._breaker.admit()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._breaker.record(self._permit, error)


def _model_verdict(error: BaseException | None) -> Verdict:
    # A connection-level failure is the provider-level breaker's; the model is not to blame.
    if error is None:
        return Verdict.SUCCESS
    if getattr(error, "connection_level", False):
        return Verdict.NEUTRAL
    return verdict_of(error)


class PairGuard:
    """One guarded call through a provider-level and a model breaker (per-model keys)."""

    __slots__ = ("_model", "_model_permit", "_whole", "_whole_permit")

    def __init__(self, whole: _Breaker, model: _Breaker) -> None:
        self._whole = whole
        self._model = model

    def __enter__(self) -> None:
        self._whole_permit = self._whole.admit()
        try:
            self._model_permit = self._model.admit()
        except BreakerOpenError:
            # Never called: a provider-level trial slot taken here is given back.
            self._whole.record_verdict(self._whole_permit, Verdict.NEUTRAL)
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is None:  # most calls succeed: no verdict to work out
            self._whole.record_verdict(self._whole_permit, Verdict.SUCCESS)
            self._model.record_verdict(self._model_permit, Verdict.SUCCESS)
            return
        self._whole.record_verdict(self._whole_permit, reachability_of(error))
        self._model.record_verdict(self._model_permit, _model_verdict(error))


_WORST_LAST = (BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN)


class ProviderBreakers:
    """One circuit breaker per provider (or provider+model), created on first guarded call."""

    def __init__(self, config: BreakerConfig | None = None, clock: Clock = time.monotonic
                 ) -> None:
        self._config = config or BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], _Breaker] = {}
        # (provider, model) → its provider-level and model breakers: one lookup per call.
        self._pairs: dict[tuple[str, str], tuple[_Breaker, _Breaker]] = {}
        # Replaced, never mutated, so notifying needs no lock.
        self._listeners: tuple[BreakerListener, ...] = ()
        self._gate: TrialGate | None = None

    @property
    def config(self) -> BreakerConfig:
        """The configuration every breaker shares."""
        return self._config

    def _key(self, provider: str, model: str) -> tuple[str, str]:
        return (provider, model if self._config.per_model else "")

    def _find(self, provider: str, model: str) -> _Breaker | None:
        return self._breakers.get(self._key(provider, model))

    def _get(self, provider: str, model: str) -> _Breaker:
        key = self._key(provider, model)
        breaker = self._breakers.get(key)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(key)
                if breaker is None:
                    breaker = _Breaker(key[0], key[1], self._config, self._clock, self._notify,
                                       self._gate)
                    self._breakers[key] = breaker
        return breaker

    def state(self, provider: str, model: str = "") -> BreakerState:
        """The breaker's state; with per-model breakers and no model, the worst of them."""
        if self._config.per_model and not model:
            states = [b.state() for (p, _), b in list(self._breakers.items()) if p == provider]
            return max(states, key=_WORST_LAST.index, default=BreakerState.CLOSED)
        breaker = self._find(provider, model)
        return BreakerState.CLOSED if breaker is None else breaker.state()

    def provider_open(self, provider: str, models: Sequence[str]) -> bool:
        """Whether the provider as a whole is out: its provider-level breaker is open or,
        with per-model keys, the breaker of every model it lists. One sick model of many
        leaves the provider serving (its health says DEGRADED, not UNHEALTHY)."""
        if not self._config.per_model:
            return self.state(provider) is BreakerState.OPEN
        whole = self._breakers.get((provider, ""))
        if whole is not None and whole.state() is BreakerState.OPEN:
            return True
        return bool(models) and all(self.state(provider, m) is BreakerState.OPEN
                                    for m in models)

    def allows(self, provider: str, model: str) -> bool:
        """Cheap gate: False while open, and while a half-open trial is in flight (the
        model's breaker or, with per-model keys, the provider-level one)."""
        if model and self._config.per_model:
            pair = self._pairs.get((provider, model))
            if pair is not None:  # the target has been called: both breakers at hand
                return pair[0].allows_now() and pair[1].allows_now()
            whole = self._breakers.get((provider, ""))
            if whole is not None and not whole.allows_now():
                return False
        breaker = self._find(provider, model)
        return breaker is None or breaker.allows_now()

    def exclusion(self, provider: str, model: str) -> ExclusionReason | None:
        """The CandidateGate answer: BREAKER_OPEN when `allows` is False."""
        return None if self.allows(provider, model) else ExclusionReason.BREAKER_OPEN

    def admission_fraction(self, provider: str, model: str, now: float | None = None) -> float:
        """Share of its normal traffic to send: rises from ramp_floor to 1 over ramp_s."""
        # Per target of every request: no list or generator, the clock read only if needed.
        breaker = self._find(provider, model)
        whole = self._provider_level(provider, model)
        if breaker is None and whole is None:
            return 1.0
        at = self._clock() if now is None else now
        share = 1.0 if breaker is None else breaker.admission_fraction(at)
        return share if whole is None else min(share, whole.admission_fraction(at))

    def _provider_level(self, provider: str, model: str) -> _Breaker | None:
        if not (model and self._config.per_model):
            return None
        return self._breakers.get((provider, ""))

    def guard(self, provider: str, model: str) -> Guard | PairGuard:
        """A context that admits one call (or raises BreakerOpenError) and counts how it
        ends; `with`, not `async with`: admitting and counting never wait. With per-model
        keys the call passes the provider-level breaker too."""
        if model and self._config.per_model:
            pair = self._pairs.get((provider, model))
            if pair is None:
                pair = self._pairs[(provider, model)] = (self._get(provider, ""),
                                                         self._get(provider, model))
            return PairGuard(*pair)
        return Guard(self._get(provider, model))

    def open_for(self, provider: str, model: str) -> float:
        """Seconds until an open breaker may admit its trial; 0.0 when not open or due."""
        breaker = self._find(provider, model)
        if breaker is None or breaker.state() is not BreakerState.OPEN:
            return 0.0
        return breaker.open_for(self._clock())

    def apply(self, provider: str, model: str, state: BreakerState,
              open_for_s: float = 0.0) -> None:
        """Adopt a state another replica decided (shared breakers, state/breaker_sync.py):
        OPEN for `open_for_s` more seconds, or CLOSED."""
        self._get(provider, model).force(state, open_for_s)

    def set_trial_gate(self, gate: TrialGate | None) -> None:
        """Ask `gate` before any breaker sends a due half-open trial (one replica at a time)."""
        with self._lock:
            self._gate = gate
            for breaker in self._breakers.values():
                breaker.gate = gate

    def add_listener(self, callback: BreakerListener) -> Callable[[], None]:
        """Call `callback` on every state change; returns a function that stops it."""
        with self._lock:
            self._listeners = (*self._listeners, callback)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(cb for cb in self._listeners if cb is not callback)

        return remove

    def remove(self, provider: str) -> None:
        """Forget a provider's breakers (it was unregistered)."""
        with self._lock:
            for key in [k for k in self._breakers if k[0] == provider]:
                del self._breakers[key]
            for key in [k for k in self._pairs if k[0] == provider]:
                del self._pairs[key]

    def _notify(self, change: BreakerChange) -> None:
        # The one log line per transition; an opening is what an operator must notice.
        level = logging.WARNING if change.new is BreakerState.OPEN else logging.INFO
        log.log(level, "breaker of %s%s: %s -> %s", change.provider,
                f"/{change.model}" if change.model else "", change.old.value, change.new.value)
        for callback in self._listeners:
            try:
                callback(change)
            except Exception:
                # A broken metrics hook must not fail the call that tripped the breaker.
                log.exception("breaker listener %r failed", callback)
