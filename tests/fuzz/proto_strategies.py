"""Hypothesis strategies built from protobuf descriptors: any message of any type, hostile.

Walks a message's descriptor field by field: strings from empty to huge (and names the
service knows), bytes with invalid UTF-8, doubles with NaN and infinities, integers over the
whole range of their type, enum numbers nobody defined (proto3 enums are open), repeated
fields from empty to thousands of entries, maps, and sub-messages down to `max_depth` (the
schema's own recursion, e.g. google.protobuf.Struct, is cut there). `wire_garbage` gives
bytes no well-behaved client sends: random bytes, mutated valid messages, string fields
holding invalid UTF-8, and groups nested far past the parser's recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1), F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}
# Values the service gives meaning to, so generated requests reach past validation too.
KNOWN_WORDS = ("", "mock", "mock-1", "mock/mock-1", "fuzz", "acme", "(none)", "tenant",
               "priority", "critical", "user", "*", "..", "../../etc/passwd", "%s%n%x",
               "\x00", "a" * 65, "http://127.0.0.1:1/v1", "http://169.254.169.254/",
               "file:///etc/passwd", "OPENAI_API_KEY", "PATH", "{prompt_file}", "ü" * 40)


@dataclass(frozen=True)
class Limits:
    """How hostile: the largest string, the longest repeated field, the deepest nesting."""

    huge_string: int = 200_000
    long_repeated: int = 2_000
    max_depth: int = 6


SMALL = Limits(huge_string=100, long_repeated=4, max_depth=3)
"""What the elements of a long repeated field are drawn with (keeps a message under MiBs)."""


def _rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]
            ) -> st.SearchStrategy[Any]:
    # one_of draws its branches evenly; a huge value in every third field would make most
    # messages huge and every example slow.
    return st.integers(0, 15).flatmap(lambda i: rare if i == 0 else common)


def _text(limits: Limits) -> st.SearchStrategy[str]:
    plain = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
    huge = st.integers(min(1_000, limits.huge_string), limits.huge_string).map(
        lambda n: "x" * n)
    return _rarely(st.one_of(plain, st.sampled_from(KNOWN_WORDS)), huge)


def _bytes(limits: Limits) -> st.SearchStrategy[bytes]:
    invalid_utf8 = st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"))
    huge = st.integers(min(1_000, limits.huge_string), limits.huge_string).map(
        lambda n: b"\xff" * n)
    return _rarely(st.one_of(st.binary(max_size=40), invalid_utf8), huge)


def _scalar(field: FieldDescriptor, limits: Limits) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == F.TYPE_DOUBLE:
        return st.floats()
    if kind == F.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_STRING:
        return _text(limits)
    if kind == F.TYPE_BYTES:
        return _bytes(limits)
    if kind == F.TYPE_ENUM:
        defined = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), st.integers(-(2**31), 2**31 - 1))
    low, high = INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.integers(-5, 100).filter(
        lambda n: low <= n <= high))


def _is_map(field: FieldDescriptor) -> bool:
    return (field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
            and field.is_repeated)


def _many(element: st.SearchStrategy[Any], small: st.SearchStrategy[Any], limits: Limits
          ) -> st.SearchStrategy[list[Any]]:
    # Mostly a few entries; sometimes thousands of copies of one small one.
    long = small.flatmap(lambda e: st.integers(min(100, limits.long_repeated),
                                               limits.long_repeated).map(lambda n: [e] * n))
    return _rarely(st.lists(element, max_size=4), long)


def _single(field: FieldDescriptor, depth: int, limits: Limits) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_MESSAGE:
        return messages(field.message_type, limits, depth + 1)
    return _scalar(field, limits)


def _field(field: FieldDescriptor, depth: int, limits: Limits) -> st.SearchStrategy[Any]:
    if _is_map(field):
        key = _scalar(field.message_type.fields_by_name["key"], limits)
        value = _single(field.message_type.fields_by_name["value"], depth, limits)
        return st.dictionaries(key, value, max_size=4)
    element = _single(field, depth, limits)
    if field.is_repeated:
        return _many(element, _single(field, depth, SMALL), limits)
    return element


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            if value_field.type == F.TYPE_MESSAGE:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if field.type == F.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == F.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _builder(cls: type[Message], descriptor: Descriptor
             ) -> Callable[[dict[str, Any]], Message]:
    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            _assign(message, descriptor.fields_by_name[name], value)
        return message
    return build


def messages(descriptor: Descriptor, limits: Limits = Limits(), depth: int = 0
             ) -> st.SearchStrategy[Message]:
    """Any message of this type, fields drawn as the module docstring says."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth >= limits.max_depth:
        return st.just(cls())
    fields = {f.name: st.deferred(lambda f=f: _field(f, depth, limits))
              for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(_builder(cls, descriptor))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _invalid_utf8_field(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    strings = [f.number for f in descriptor.fields if f.type == F.TYPE_STRING] or [1]
    return st.tuples(st.sampled_from(strings), st.sampled_from(
        (b"\xff", b"\xc3\x28", b"ok\xed\xa0\x80"))).map(
        lambda pair: _varint(pair[0] << 3 | 2) + _varint(len(pair[1])) + pair[1])


def _deep_groups(depth: int) -> bytes:
    # Field 1 as a start-group tag, nested `depth` times, then closed: unknown to every
    # message, and deeper than the parser's recursion limit (100) for large depths.
    return b"\x0b" * depth + b"\x0c" * depth


def wire_garbage(descriptor: Descriptor, limits: Limits = Limits()
                 ) -> st.SearchStrategy[bytes]:
    """Bytes sent as a serialized `descriptor` message that mostly are not one."""
    valid = messages(descriptor, Limits(1_000, 20, 3)).map(lambda m: m.SerializeToString())
    mutated = st.tuples(valid, st.integers(0, 2**16), st.binary(min_size=1, max_size=8)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[2] + t[0][t[1] % (len(t[0]) + 1):])
    truncated = valid.filter(lambda b: len(b) > 1).map(lambda b: b[:-1])
    return st.one_of(
        st.binary(max_size=200), mutated, truncated, _invalid_utf8_field(descriptor),
        st.integers(50, 50_000).map(_deep_groups),
        st.just(_varint(1 << 3 | 2) + _varint(2**31)),  # a length far past the end
    )
