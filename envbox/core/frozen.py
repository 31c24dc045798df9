"""A frozen record decorator for the launch path, where `import dataclasses` is too slow. Pure.

`dataclasses` pulls in inspect, re and enum (~10 ms at start-up here); the launch path with
limits imports the cgroup modules, so their value types use this instead. It gives what those
types use: keyword or positional construction with defaults, __post_init__, equality, hashing,
repr, and immutability.
"""

from __future__ import annotations

_MISSING = object()


def frozen(cls):
    fields = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {name: cls.__dict__[name] for name in fields if name in cls.__dict__}

    def __init__(self, *args, **kwargs):
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__} takes at most {len(fields)} arguments")
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields or key in values:
                raise TypeError(f"{cls.__name__}: unexpected or repeated argument {key!r}")
            values[key] = value
        for name in fields:
            value = values.get(name, defaults.get(name, _MISSING))
            if value is _MISSING:
                raise TypeError(f"{cls.__name__}: missing argument {name!r}")
            object.__setattr__(self, name, value)
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def _values(self):
        return tuple(getattr(self, name) for name in fields)

    def __setattr__(self, name, value):
        raise AttributeError(f"{cls.__name__} is frozen")

    def __eq__(self, other):
        return other.__class__ is self.__class__ and _values(self) == _values(other)

    def __hash__(self):
        return hash((cls.__name__, _values(self)))

    def __repr__(self):
        return f"{cls.__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in fields) + ")"

    for name, fn in (("__init__", __init__), ("__setattr__", __setattr__), ("__eq__", __eq__), ("__hash__", __hash__), ("__repr__", __repr__)):
        setattr(cls, name, fn)
    cls.__delattr__ = __setattr__
    cls._fields = fields
    return cls


def as_dict(record) -> dict:
    return {name: getattr(record, name) for name in record._fields}
