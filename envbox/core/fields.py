"""One validator per kind of field that profiles and catalogs both set. Pure.

A catalog release and a profile can both set environment variables, paths, names, free text:
each kind is checked here, once, so a catalog is never looser than a profile (a release env
`A=B: x` would otherwise fail every launch that uses it, far from the file that said it).
Each function returns the clean value or raises ValueError with a message that names the
field; the caller adds file:line.
"""

from __future__ import annotations

from typing import Any

from envbox.core.names import NAME_RULE, describe_bad_name, is_valid_name

NAME_MAX = 255  # bytes in one path component (limits.h)
PATH_MAX = 4096  # bytes in a whole path, with its NUL
LAYER_TOPS = ("usr", "etc", "opt")  # what an overlay layer may hold
_ENV_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_ENV_REST = _ENV_FIRST | frozenset("0123456789")


def kind_of(value: Any) -> str:
    """'a string', 'the number 3', 'null' ... for messages."""
    import math

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}" if not (isinstance(value, float) and math.isinf(value)) else "an infinite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def env_name(key: Any) -> str:
    """A POSIX environment variable name: [A-Za-z_][A-Za-z0-9_]*, ASCII only."""
    if not isinstance(key, str) or not key or key[0] not in _ENV_FIRST or not all(c in _ENV_REST for c in key):
        raise ValueError(f"bad environment variable name {describe_bad_name(key)} (use letters, digits and '_', not starting with a digit)")
    return key


def env_value(key: str, value: Any) -> str:
    """A string (or a whole number, written as text); never a boolean, list or null, no NUL."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"env.{key} must be a string, not {kind_of(value)}")
    text = str(value)
    if "\x00" in text:
        raise ValueError(f"env.{key} has a NUL character")
    return text


def text(value: Any, what: str) -> str:
    """Free text (descriptions, desktop names): a string without NUL or other control
    characters except tab and newline."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {kind_of(value)}")
    bad = next((c for c in value if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise ValueError(f"{what} has the control character {bad!r}")
    return value


def name(value: Any, what: str) -> str:
    """A profile or tool name (names.py): it becomes a path, a cgroup name, a file name."""
    if not is_valid_name(value):
        raise ValueError(f"bad {what} {describe_bad_name(value)}: names use {NAME_RULE}")
    return value


def absolute_path(value: Any, what: str) -> str:
    """An absolute host path: no NUL, no '..' component, within the kernel's length limits."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{what} must be an absolute path, not {describe_bad_name(value)}")
    _lengths(value, what)
    if ".." in value.split("/"):
        raise ValueError(f"{what} {describe_bad_name(value)} has a '..' component")
    return value


def layer_path(value: Any, what: str) -> str:
    """A path inside a layer: relative, under usr/, etc/ or opt/, no empty, '.' or '..' parts."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {kind_of(value)}")
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] not in LAYER_TOPS:
        raise ValueError(f"{what} {describe_bad_name(value)} must be a relative path under usr/, etc/ or opt/")
    _lengths(value, what)
    return value


def link_target(value: Any, what: str) -> str:
    """What a symlink points at: a non-empty string within the kernel's limits."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {describe_bad_name(value)}")
    _lengths(value, what)
    return value


def _lengths(value: str, what: str) -> None:
    raw = value.encode("utf-8", "surrogateescape")
    if b"\x00" in raw:
        raise ValueError(f"{what} has a NUL character")
    if len(raw) >= PATH_MAX:
        raise ValueError(f"{what} is {len(raw)} bytes long, more than a path can be ({PATH_MAX - 1})")
    longest = max((len(p) for p in raw.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise ValueError(f"{what} has a {longest}-byte component, more than a file name can be ({NAME_MAX})")
