"""JSON in and out of provider calls: orjson's speed without losing what json accepted."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from provider_router.connectors.payload import dumps, dumps_bytes, field, integer, parse_json


def test_parse_plain_and_bytes() -> None:
    assert parse_json(b'{"a":[1,2.5,"\xc3\xa9",null,true]}') == {"a": [1, 2.5, "é", None, True]}
    assert parse_json('{"a":1}') == {"a": 1}


def test_parse_accepts_what_json_accepted() -> None:
    # orjson reads an integer over 64 bits as a float; no provider field is that large.
    assert parse_json('{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
    value = parse_json('{"x": NaN}')
    assert isinstance(value, dict) and math.isnan(value["x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"{", b"", b"\xff\xfe", b'{"a":1}x'])
def test_malformed_is_a_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json(bad)


def test_dumps_is_compact_utf8_and_handles_big_integers() -> None:
    assert dumps_bytes({"a": "é", "b": [1, None]}) == '{"a":"é","b":[1,null]}'.encode()
    assert dumps({"n": 2**80}) == '{"n":1208925819614629174706176}'


def test_readers_are_forgiving() -> None:
    assert field({"a": {"b": 1}}, "a", "b") == 1
    assert field({"a": [1]}, "a", "b") is None
    assert field(MappingProxyType({"a": MappingProxyType({"b": 2})}), "a") == {"b": 2}
    assert integer(True) == 0 and integer(-3) == 0 and integer(4.7) == 4
