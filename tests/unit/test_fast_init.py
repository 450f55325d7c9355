"""fast_init: the faster constructors behave exactly like the dataclass-generated ones."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field

import pytest

from provider_router import domain as d
from provider_router.fast_init import fast_init

MESSAGE = d.ChatMessage(d.Role.USER, "hello")
USAGE = d.Usage(12, 7, 19)
RESULT = d.ChatResult("m", "hi", d.FinishReason.STOP, USAGE, (d.ToolCall("1", "f", "{}"),), "id")
ATTEMPT = d.Attempt("p", "m", d.AttemptOutcome.SUCCESS, 0.25)

SAMPLES = [
    d.RoutingOptions(model="m", attributes={"tier": "gold"}, labels=("a",)),
    d.TextPart("t"),
    d.ToolCall("1", "f", "{}"),
    MESSAGE,
    d.ChatRequest((MESSAGE,), stream=True),
    d.ProviderRequest(d.ChatRequest((MESSAGE,)), "m"),
    USAGE,
    RESULT,
    d.TextDelta("tok"),
    d.ToolCallDelta(0, "1", "f", "{"),
    d.StreamFinish(d.FinishReason.STOP, USAGE, "m"),
    ATTEMPT,
    d.RouteTarget("p", "m"),
    d.CandidateReport("p", "m", True, 1, 0.5),
    d.RouteDecision((d.RouteTarget("p", "m"),), d.Strategy.COST),
    d.ChatResponse("p", "m", RESULT, None, 0.5, (ATTEMPT,), d.Strategy.WEIGHTED),
    d.StreamStarted("p", "m", d.Strategy.WEIGHTED),
    d.StreamRestarted("why", "p", "m"),
    d.StreamEnded("p", "m", d.FinishReason.STOP, USAGE, 0.1, (ATTEMPT,), 0.5, 0.1),
]


def _values(obj: object) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_instances_are_what_the_constructor_was_given(obj: object) -> None:
    cls = type(obj)
    values = _values(obj)
    by_keyword = cls(**values)
    by_position = cls(*values.values())
    assert type(by_keyword) is type(by_position) is cls
    assert by_keyword == by_position == obj
    assert _values(by_position) == values
    assert repr(by_position) == repr(obj)


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_instances_stay_frozen(obj: object) -> None:
    name = dataclasses.fields(obj)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(obj, name)
    assert not hasattr(obj, "__dict__")


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_replace_copy_and_pickle(obj: object) -> None:
    first = dataclasses.fields(obj)[0].name  # type: ignore[arg-type]
    changed = dataclasses.replace(obj, **{first: getattr(obj, first)})  # type: ignore[type-var]
    assert changed == obj and type(changed) is type(obj)
    assert copy.copy(obj) == obj
    assert copy.deepcopy(obj) == obj
    assert pickle.loads(pickle.dumps(obj)) == obj


def test_defaults_and_fresh_default_factories() -> None:
    assert d.ChatMessage(d.Role.USER) == d.ChatMessage(d.Role.USER, "", (), (), "", "")
    first, second = d.RoutingOptions(), d.RoutingOptions()
    assert first.attributes == {} and first.attributes is not second.attributes
    assert d.ChatRequest(()).metadata is not d.ChatRequest(()).metadata
    assert d.Usage() == d.Usage(0, 0, 0, False)


def test_hash_follows_the_fields() -> None:
    assert hash(d.Usage(1, 2, 3)) == hash(d.Usage(1, 2, 3))
    assert {d.RouteTarget("p", "m"), d.RouteTarget("p", "m")} == {d.RouteTarget("p", "m")}
    with pytest.raises(TypeError):  # a dict field, as with the generated __init__
        hash(d.RoutingOptions())


def test_signature_and_argument_errors_match_a_plain_dataclass() -> None:
    assert str(inspect.signature(d.RoutingOptions)).startswith("(model: 'str' = ''")
    assert "attributes: 'Mapping[str, str]' = <factory>" in str(inspect.signature(d.RoutingOptions))
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'role'"):
        d.ChatMessage()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        d.Usage(colour=1)  # type: ignore[call-arg]


def test_match_statements_still_work() -> None:
    match d.Usage(1, 2, 3):
        case d.Usage(prompt, completion, total):
            assert (prompt, completion, total) == (1, 2, 3)
        case _:
            pytest.fail("no match")


def test_subclassing_a_sped_up_class_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be subclassed"):
        class _Sub(d.ChatMessage):  # an inherited fast __init__ would lose the subclass
            pass


def test_it_refuses_what_it_cannot_reproduce() -> None:
    @dataclass(slots=True)
    class Mutable:
        x: int

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        x: int = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class PostInit:
        x: int

        def __post_init__(self) -> None:
            pass

    for cls in (Mutable, KeywordOnly, PostInit):
        with pytest.raises(TypeError):
            fast_init(cls)

