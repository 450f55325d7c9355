"""A faster __init__ for the frozen slotted dataclasses built on every request.

The generated __init__ of a frozen dataclass stores each field with object.__setattr__ (the
class's own __setattr__ raises), about ten times the cost of a plain slot store: 1-1.6 µs for
each request, message and result object built on every call (issue 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar

_T = TypeVar("_T")


class _Factory:
    """The default of a parameter whose field has a default factory (as dataclasses shows it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()

# The two class switches cost more than one field stored the frozen way; from two fields on
# they win (callgrind: 4.4k against 4.6k instructions at two fields, 4.5k against 5.8k at three).
_SWAP_MIN_FIELDS = 2


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen slotted dataclass a faster __init__ with the same signature and effect.

    The generated __init__ of a frozen dataclass stores each field with object.__setattr__ (its
    own __setattr__ raises), about ten times the cost of a plain slot store: 1-1.6 µs for the
    request, message and result objects built on every call. This one moves the new instance
    to a private subclass that adds no slots and keeps object's __setattr__, stores the fields
    plainly, and moves it back: one object.__setattr__ per instance instead of one per field.
    Everything else the dataclass generated (eq, hash, repr, replace, pickling, match args,
    assignment raising FrozenInstanceError) is untouched. Apply it above @dataclass.

    The class becomes final: an inherited __init__ would move a subclass's instances back
    to this class, so subclassing it raises TypeError.
    """
    params, stores, namespace = _init_parts(cls)
    if len(stores) >= _SWAP_MIN_FIELDS:
        namespace["_Fields"] = type(f"_Mutable{cls.__name__}", (cls,), {
            "__slots__": (), "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__, "__module__": cls.__module__})
        namespace["_Frozen"] = cls
        body = ["_set(self, '__class__', _Fields)",
                *(f"self.{name} = {value}" for name, value in stores),
                "self.__class__ = _Frozen"]
    else:
        body = [f"_set(self, {name!r}, {value})" for name, value in stores]
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body) + "\n"
    exec(source, namespace)  # as dataclasses does: a real signature, no per-call arg parsing
    init: Callable[..., None] = namespace["__init__"]
    init.__module__ = cls.__module__
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]  # replacing it is the point
    # Installed only now, so the private subclass above is the one allowed.
    type.__setattr__(cls, "__init_subclass__", classmethod(_final))
    return cls


def _final(cls: type, /, **kwargs: object) -> None:
    raise TypeError(f"{cls.__name__}: the classes fast_init speeds up cannot be subclassed")


def _init_parts(cls: type) -> tuple[list[str], list[tuple[str, str]], dict[str, Any]]:
    """Parameters, (field, stored expression) pairs and globals of `cls`'s __init__."""
    options = vars(cls).get("__dataclass_params__")
    if options is None or not options.frozen or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__}: fast_init is for frozen slotted dataclasses")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: fast_init does not call __post_init__")
    params: list[str] = []
    stores: list[tuple[str, str]] = []
    namespace: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    for f in fields(cls):
        if not f.init or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: fast_init needs plain init fields")
        value = f.name
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            value = f"_factory_{f.name}() if {f.name} is _FACTORY else {f.name}"
        else:
            params.append(f.name)
        stores.append((f.name, value))
    return params, stores, namespace
