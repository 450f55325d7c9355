"""Request deserializers that turn bytes which are not the expected message into
INVALID_ARGUMENT instead of grpc's own UNKNOWN with a logged traceback.

grpc.aio calls the request deserializer before any handler runs; when it raises (corrupt
wire format, invalid UTF-8 in a string field, nesting past the parser's recursion limit),
grpc logs the traceback and answers UNKNOWN, which says "server bug" for a caller's
mistake. `safe_deserializer` instead returns an `UndecodableRequest`: any field the servicer
reads from it raises InvalidRequestError, which the observer maps to INVALID_ARGUMENT like
every other bad request. A valid request costs one Python call more (a few dozen
instructions), nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

from provider_router.errors import FieldViolation, InvalidRequestError


class UndecodableRequest:
    """Stands in for a request that did not parse; reading any field raises
    InvalidRequestError naming the expected type."""

    __slots__ = ("_problem", "_type")

    def __init__(self, type_name: str, problem: str) -> None:
        self._type = type_name
        self._problem = problem

    def __getattr__(self, name: str) -> object:
        raise InvalidRequestError(
            f"the request is not a valid {self._type}",
            (FieldViolation("request", f"not a serialized {self._type}: {self._problem}"),))


def safe_deserializer(cls: type[Message]) -> Callable[[bytes], Message | UndecodableRequest]:
    """`cls.FromString`, answering an UndecodableRequest instead of raising."""
    parse = cls.FromString
    type_name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Message | UndecodableRequest:
        try:
            return parse(data)
        except DecodeError as error:
            # upb's message names the type and the problem, never the bytes.
            return UndecodableRequest(type_name, str(error).rpartition(": ")[2][:200])

    return deserialize
