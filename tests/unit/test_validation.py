"""ProviderSpec validation: one violation per problem, each naming its field path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provider_router.domain import (
    CommandOptions,
    MockOptions,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    ProviderTimeouts,
    Secret,
)
from provider_router.validation import validate_provider_spec

GOOD = ProviderSpec(name="openai-eu_1", kind=ProviderKind.OPENAI,
                    base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY",
                    models=(ModelSpec("gpt-4o", 2.5, 10.0, 128_000), ModelSpec("gpt-4o-mini")),
                    priority=10, weight=2.0, max_concurrent=64, rate_limit_rpm=500,
                    timeouts=ProviderTimeouts(connect=2.0, total=60.0), labels=("eu",),
                    headers={"X-Title": "router"})


def fields(spec: ProviderSpec) -> list[str]:
    return [v.field for v in validate_provider_spec(spec)]


def test_a_good_spec_has_no_violations() -> None:
    assert validate_provider_spec(GOOD) == ()
    agent = ProviderSpec("agent", ProviderKind.COMMAND, models=(ModelSpec("default"),),
                         command=CommandOptions(("claude", "-p"), ("HOME",)))
    assert validate_provider_spec(agent) == ()
    mock = ProviderSpec("mock", ProviderKind.MOCK, models=(ModelSpec("m"),),
                        mock=MockOptions(latency=0.1, fail_status=503))
    assert validate_provider_spec(mock) == ()


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "provider.name"),
    ({"name": "Upper"}, "provider.name"),
    ({"name": "-dash-first"}, "provider.name"),
    ({"name": "a" * 64}, "provider.name"),
    ({"name": "has space"}, "provider.name"),
    ({"base_url": "ftp://x.example"}, "provider.base_url"),
    ({"base_url": "api.openai.com/v1"}, "provider.base_url"),
    ({"base_url": "https://"}, "provider.base_url"),
    ({"base_url": "https://x.example/" + "a" * 3000}, "provider.base_url"),
    ({"api_key_env": "1BAD"}, "provider.api_key_env"),
    ({"api_key": Secret("k" * 9000)}, "provider.api_key"),
    ({"models": ()}, "provider.models"),
    ({"models": tuple(ModelSpec(f"m{i}") for i in range(513))}, "provider.models"),
    ({"priority": 1001}, "provider.priority"),
    ({"priority": -1001}, "provider.priority"),
    ({"weight": -0.5}, "provider.weight"),
    ({"weight": 1000.5}, "provider.weight"),
    ({"weight": float("nan")}, "provider.weight"),
    ({"max_concurrent": -1}, "provider.max_concurrent"),
    ({"rate_limit_rpm": -1}, "provider.rate_limit_rpm"),
    ({"rate_limit_tpm": -1}, "provider.rate_limit_tpm"),
    ({"timeouts": ProviderTimeouts(idle=0.0)}, "provider.timeouts.idle"),
    ({"timeouts": ProviderTimeouts(total=float("inf"))}, "provider.timeouts.total"),
    ({"labels": tuple(f"l{i}" for i in range(65))}, "provider.labels"),
    ({"labels": ("ok", "")}, "provider.labels[1]"),
    ({"headers": {"Bad Header": "x"}}, "provider.headers['Bad Header']"),
    ({"headers": {"X-Ok": "line\r\nbreak"}}, "provider.headers['X-Ok']"),
    ({"headers": {f"H{i}": "v" for i in range(65)}}, "provider.headers"),
    ({"command": CommandOptions(("x",))}, "provider.command"),
    ({"mock": MockOptions()}, "provider.mock"),
])
def test_each_problem_is_one_violation(change: dict[str, object], field: str) -> None:
    assert fields(replace(GOOD, **change)) == [field]  # type: ignore[arg-type]


@pytest.mark.parametrize(("model", "field"), [
    (ModelSpec(""), "provider.models[1].name"),
    (ModelSpec("has space"), "provider.models[1].name"),
    (ModelSpec("x" * 257), "provider.models[1].name"),
    (ModelSpec("gpt-4o"), "provider.models[1].name"),  # duplicate
    (ModelSpec("n", input_per_mtok=-1.0), "provider.models[1].input_per_mtok"),
    (ModelSpec("n", output_per_mtok=float("inf")), "provider.models[1].output_per_mtok"),
    (ModelSpec("n", context_window=-5), "provider.models[1].context_window"),
])
def test_model_problems_name_the_model_index(model: ModelSpec, field: str) -> None:
    assert fields(replace(GOOD, models=(GOOD.models[0], model))) == [field]


def test_kind_specific_requirements() -> None:
    compatible = replace(GOOD, kind=ProviderKind.OPENAI_COMPATIBLE, base_url="")
    assert fields(compatible) == ["provider.base_url"]
    agent = ProviderSpec("agent", ProviderKind.COMMAND, models=(ModelSpec("default"),))
    assert fields(agent) == ["provider.command.argv"]
    agent = replace(agent, command=CommandOptions(("claude",), ("OK", "not-a-var")))
    assert fields(agent) == ["provider.command.required_envs[1]"]
    agent = replace(agent, command=CommandOptions(tuple("a" for _ in range(300))))
    assert fields(agent) == ["provider.command.argv"]
    mock = ProviderSpec("mock", ProviderKind.MOCK, models=(ModelSpec("m"),),
                        mock=MockOptions(latency=-1.0, chunk_count=0, fail_status=42))
    assert fields(mock) == ["provider.mock.latency", "provider.mock.chunk_count",
                            "provider.mock.fail_status"]


def test_every_problem_is_reported_at_once() -> None:
    bad = replace(GOOD, name="BAD", base_url="nope", weight=-1, priority=5000,
                  models=(ModelSpec("a"), ModelSpec("a"), ModelSpec("b", input_per_mtok=-2)))
    assert fields(bad) == ["provider.name", "provider.base_url", "provider.models[1].name",
                           "provider.models[2].input_per_mtok", "provider.priority",
                           "provider.weight"]
