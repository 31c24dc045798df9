"""The one pattern for names that become paths, cgroup names or desktop file names. Pure."""

from __future__ import annotations

import os

# A name starts with a lowercase letter or digit, then lowercase letters, digits, '.', '_'
# or '-', at most 64 characters, and never ends in '.'. So it is never empty, '.', '..',
# never has a '/', NUL, whitespace or control character, never starts with '-' (it cannot
# become an option), and never collides with a cgroup control file (those all contain a
# '.', so cgroup names get a prefix anyway: see cgroups.py).
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_REST = _FIRST | frozenset("._-")
NAME_RULE = "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"


def is_valid_name(name: object) -> bool:
    # NAME_PATTERN, checked by hand: `re` costs the launch path a few milliseconds to import.
    return (
        isinstance(name, str)
        and 1 <= len(name) <= 64
        and name[0] in _FIRST
        and all(c in _REST for c in name)
        and not name.endswith(".")
        and ".." not in name
    )


def describe_bad_name(name: object) -> str:
    """A printable rendering of a rejected name (control characters escaped)."""
    text = repr(name) if isinstance(name, str) else repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def project_default_name(path: str) -> str:
    """A profile name for a project file: its directory's name, made to fit the name pattern."""
    base = os.path.basename(os.path.dirname(os.path.abspath(path))).lower()
    out = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in base)
    out = out.strip("-.").replace("..", ".")[:64].rstrip(".") or "project"
    return out if out[0].isalnum() else f"p{out}"[:64]


def printable(value: object) -> str:
    """Text safe to print to a terminal: control characters (ESC, CR, BEL...), DEL, C1
    controls, undecodable bytes and other non-printable characters shown as \\x1b-style
    escapes. The one escaping used for every name, path and command that envbox prints and
    did not itself validate (launch records, layer labels, catalog text, file names)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        elif c == "\\":
            out.append(c)
        else:
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)
