"""Small builders for routing tests: specs, requests, registries and planners."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Mapping, Sequence

from provider_router.domain import (
    Capability,
    ChatMessage,
    ChatRequest,
    ExclusionReason,
    GenerationParams,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    Role,
    RouteTarget,
    RoutingConstraints,
    RoutingOptions,
    Strategy,
)
from provider_router.routing.planner import Planner
from provider_router.routing.registry import Registry
from provider_router.routing.settings import RoutingSettings, parse_routing_settings
from provider_router.state.memory import MemoryStateStore

# The [routing] example the format was specified with: test_settings loads it as is,
# test_planner routes by it (with two rules more).
ISSUE_FORMAT = """
[routing]
enabled = true
default_provider = "anthropic"
default_model = "claude-sonnet-4-5"

[[routing.rules]]
name = "critical-issues-opus"
priority = 100
conditions = { priority = "critical" }
provider = "anthropic"
model = "claude-opus-4"

[[routing.rules]]
name = "retry-use-haiku"
priority = 95
conditions = { retry_count = { gte = 1 } }
model = "claude-haiku-4"          # provider omitted: any provider serving the model

[[routing.rules]]
name = "off-hours-haiku"
priority = 70
conditions = { hour_range = [0, 8] }
provider = "anthropic"
model = "claude-haiku-4"
"""


def parse_settings(text: str) -> RoutingSettings:
    """The RoutingSettings of a TOML document's [routing] table."""
    return parse_routing_settings(tomllib.loads(text).get("routing", {}))


def provider(name: str, *models: str | ModelSpec, priority: int = 0, weight: float = 1.0,
             enabled: bool = True, max_concurrent: int = 0,
             capabilities: frozenset[Capability] = frozenset({Capability.CHAT}),
             labels: tuple[str, ...] = ()) -> ProviderSpec:
    """A mock-kind provider serving `models` (default: one model named "m")."""
    specs = tuple(m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models or ("m",))
    return ProviderSpec(name=name, kind=ProviderKind.MOCK, models=specs, priority=priority,
                        weight=weight, enabled=enabled, max_concurrent=max_concurrent,
                        capabilities=capabilities, labels=labels)


def request(model: str = "m", *, strategy: Strategy | None = None,
            attributes: Mapping[str, str] | None = None, labels: tuple[str, ...] = (),
            capabilities: frozenset[Capability] = frozenset(),
            prefer: tuple[str, ...] = (), exclude: frozenset[str] = frozenset(),
            constraints: RoutingConstraints | None = None, affinity_key: str = "",
            stream: bool = False, max_tokens: int | None = None, text: str = "hello") -> ChatRequest:
    """A one-message chat request with the given routing options."""
    return ChatRequest(
        messages=(ChatMessage(Role.USER, text),),
        routing=RoutingOptions(model=model, capabilities=capabilities, strategy=strategy,
                               attributes=dict(attributes or {}), labels=labels,
                               prefer_providers=prefer, exclude_providers=exclude,
                               constraints=constraints or RoutingConstraints(),
                               affinity_key=affinity_key),
        params=GenerationParams(max_tokens=max_tokens), stream=stream)


class FakeClock:
    """A settable wall clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeGate:
    """A CandidateGate answering from a table of provider -> reason."""

    def __init__(self, reasons: Mapping[str, ExclusionReason] | None = None) -> None:
        self.reasons = dict(reasons or {})

    def exclusion(self, provider: str, model: str) -> ExclusionReason | None:
        return self.reasons.get(provider)


async def make_registry(*specs: ProviderSpec, settings: RoutingSettings | None = None,
                        clock: FakeClock | None = None) -> Registry:
    """A registry over an in-memory store, loaded with `specs` as config."""
    registry = Registry(MemoryStateStore(None), settings or RoutingSettings(),
                        clock=clock or FakeClock())
    await registry.load(specs)
    return registry


def make_planner(registry: Registry, settings: RoutingSettings | None = None, seed: int = 0,
                 gate: FakeGate | None = None) -> Planner:
    """A planner with seeded randomness."""
    return Planner(registry, settings or RoutingSettings(), random.Random(seed), gate)


def names(targets: Sequence[RouteTarget]) -> list[str]:
    """Provider names of a decision's targets, in order."""
    return [t.provider for t in targets]
