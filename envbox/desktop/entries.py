"""Desktop entries: parse and render them keeping untouched lines as they are, Exec quoting,
and the entries envbox writes (generated from a profile, or wrapping an existing one). Pure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from envbox.core.errors import EnvboxError
from envbox.core.names import is_valid_name

if TYPE_CHECKING:
    from envbox.core.profile import Desktop

MAIN_GROUP = "Desktop Entry"
ACTION_PREFIX = "Desktop Action "
PROFILE_KEY = "X-Envbox-Profile"
SOURCE_KEY = "X-Envbox-Source"
HASH_KEY = "X-Envbox-Source-Hash"

# Desktop Entry spec 1.5, "The Exec key": an argument holding any of these must be quoted, and
# inside double quotes these four are escaped with a backslash.
RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
QUOTED_ESCAPES = frozenset('"`$\\')
# Not reserved by the spec, but a bare CR splits arguments in some launchers; quoting is harmless.
_QUOTE_ALSO = frozenset("\r")
_SEPARATORS = " \t\n"
# "Possible value types": the escapes of string values, undone before the Exec quoting rules.
_STRING_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_KEY_RE = re.compile(r"[A-Za-z0-9-]+(\[[^\[\]=]+\])?")
# What may become a file name in an applications directory: a plain base name, no leading dot.
FILE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,200}\.desktop")
# A string value may carry these; every other control character is refused.
_ALLOWED_CONTROLS = "\t\n\r"


class DesktopError(EnvboxError):
    """A desktop entry cannot be read, wrapped or written."""


class FieldCode(str):
    """An Exec argument holding field codes (%U, %f, %k ...) for the launcher to expand.

    Its text is the argument as written in the command line: a literal '%' in it stays '%%'.
    parse_exec returns these so that quote_exec writes them back unchanged, while a plain str
    argument that merely contains "%U" is written as "%%U" and never expanded.
    """


# --- string values ---------------------------------------------------------------------------


def refuse_controls(text: str, what: str = "value") -> None:
    for char in text:
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            raise ValueError(f"{what} {text!r} contains the control character {char!r}")


def escape_string(text: str) -> str:
    """A string as a desktop file value: backslash, newline, tab and CR escaped, and spaces
    at either end written as \\s (readers strip them otherwise). Refuses other controls."""
    refuse_controls(text)
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    body = out.strip(" ")
    lead = len(out) - len(out.lstrip(" "))
    return "\\s" * lead + body + "\\s" * (len(out) - lead - len(body))


def unescape_string(value: str) -> str:
    """Undo the string escapes. A backslash before any other character is kept with it, for
    the Exec quoting rules to read (files in the wild write \\" for \\\\" inside quotes)."""
    return _ESCAPE_RE.sub(lambda m: _STRING_ESCAPES.get(m[1], m[0]), value)


def escape_list(items: Sequence[str]) -> str:
    """A list value (Categories, MimeType): each item escaped, ';' in an item as '\\;'."""
    return "".join(escape_string(item).replace(";", "\\;") + ";" for item in items)


# --- Exec ------------------------------------------------------------------------------------


def quote_exec(argv: Sequence[str]) -> str:
    """argv as an Exec value exactly as it is written in the file (both escaping layers).

    Plain str arguments are literal: '%' is doubled and reserved characters quoted. FieldCode
    arguments are written as they are, so the launcher expands their codes."""
    if not argv:
        raise ValueError("an Exec line needs a program")
    program = argv[0]
    if isinstance(program, FieldCode) or not program:
        raise ValueError(f"the program {program!r} must be a plain, non-empty path")
    if "=" in program:  # the spec: "The name or path of the executable program may not contain '='"
        raise ValueError(f"the program path {program!r} contains '=', which the Exec key does not allow")
    return escape_string(" ".join(_quote_arg(arg) for arg in argv))


def _quote_arg(arg: str) -> str:
    refuse_controls(arg, "argument")
    text = arg if isinstance(arg, FieldCode) else arg.replace("%", "%%")
    if text and not (RESERVED.intersection(text) or _QUOTE_ALSO.intersection(text)):
        return text
    return '"' + "".join("\\" + c if c in QUOTED_ESCAPES else c for c in text) + '"'


def parse_exec(value: str) -> list[str]:
    """An Exec value as written in the file -> argv; arguments with field codes are FieldCode.

    Strict where the spec is clear; where files in the wild go beyond it, reads them the way
    GLib does: single quotes, and a backslash outside quotes escaping the next character."""
    line = unescape_string(value)
    args: list[str] = []
    i = 0
    while True:
        while i < len(line) and line[i] in _SEPARATORS:
            i += 1
        if i >= len(line):
            return args
        arg, i = _read_arg(line, i)
        args.append(arg)


def _read_arg(line: str, i: int) -> tuple[str, int]:
    pieces: list[tuple[str, bool]] = []  # (text, is a field code)
    quote = ""  # the open quote character, if any
    while i < len(line) and (quote or line[i] not in _SEPARATORS):
        char, nxt = line[i], line[i + 1 : i + 2]
        if char == quote:
            quote = ""
        elif not quote and char in "\"'":
            quote = char
        elif char == "\\" and (not quote and nxt or quote == '"' and nxt in QUOTED_ESCAPES):
            pieces.append((nxt, False))
            i += 1
        elif char == "\\" and not quote:
            raise ValueError("the command line ends in a backslash")
        elif char == "%":
            if not nxt or nxt in _SEPARATORS:
                raise ValueError("a lone '%' (a literal percent sign is written '%%')")
            pieces.append(("%", False) if nxt == "%" else ("%" + nxt, True))
            i += 1
        else:
            pieces.append((char, False))
        i += 1
    if quote:
        raise ValueError(f"a quote ({quote}) is not closed")
    if not any(code for _, code in pieces):
        return "".join(text for text, _ in pieces), i
    return FieldCode("".join(text if code else text.replace("%", "%%") for text, code in pieces)), i


# --- the file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One [group]: its header line and every line under it (entries, comments, blanks) raw."""

    name: str
    header: str
    lines: tuple[str, ...] = ()

    def raw(self, key: str) -> str | None:
        """The value of key exactly as written after '=' (escapes still in)."""
        for line in self.lines:
            entry = split_entry(line)
            if entry and entry[0] == key:
                return entry[1]
        return None

    def string(self, key: str) -> str | None:
        value = self.raw(key)
        return None if value is None else unescape_string(value)


@dataclass(frozen=True)
class DesktopFile:
    head: tuple[str, ...]  # comments and blank lines before the first group
    groups: tuple[Group, ...]

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)


def split_entry(line: str) -> tuple[str, str] | None:
    """(key with its [locale], raw value) of an entry line; None for comments and blanks."""
    stripped = line.lstrip(" \t")
    if not stripped or stripped.startswith("#") or stripped.startswith("[") or "=" not in line:
        return None
    key, _, value = line.partition("=")
    return key.strip(" \t"), value.lstrip(" \t")


def parse_desktop(text: str) -> DesktopFile:
    """Parse a desktop file; ValueError("line N: ...") where it is not one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    head: list[str] = []
    groups: list[tuple[str, str, list[str], set[str]]] = []
    for number, line in enumerate(lines, 1):
        if "\x00" in line:
            raise ValueError(f"line {number}: contains a NUL byte")
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            (groups[-1][2] if groups else head).append(line)
        elif line.startswith("["):
            name = line.rstrip(" \t")[1:-1]
            if not line.rstrip(" \t").endswith("]") or "[" in name or "]" in name or not name:
                raise ValueError(f"line {number}: bad group header {line!r}")
            if any(g[0] == name for g in groups):
                raise ValueError(f"line {number}: the group [{name}] appears twice")
            groups.append((name, line, [], set()))
        elif not groups:
            raise ValueError(f"line {number}: an entry before the first [group]")
        else:
            _add_entry(groups[-1], line, number)
    return DesktopFile(tuple(head), tuple(Group(name, header, tuple(body)) for name, header, body, _ in groups))


def _add_entry(group: tuple, line: str, number: int) -> None:
    entry = split_entry(line)
    if entry is None or not _KEY_RE.fullmatch(entry[0]):
        raise ValueError(f"line {number}: {line[:60]!r} is not a comment, a [group] or a Key=value entry")
    if entry[0] in group[3]:
        raise ValueError(f"line {number}: the key {entry[0]} appears twice in [{group[0]}]")
    group[3].add(entry[0])
    group[2].append(line)


def render_desktop(doc: DesktopFile) -> str:
    lines = list(doc.head)
    for group in doc.groups:
        lines.append(group.header)
        lines.extend(group.lines)
    return "\n".join(lines) + "\n"


def set_entry(group: Group, key: str, raw_value: str) -> Group:
    """Replace key's line, or add it after the group's last entry (raw_value already escaped)."""
    line = f"{key}={raw_value}"
    lines = list(group.lines)
    for index, old in enumerate(lines):
        entry = split_entry(old)
        if entry and entry[0] == key:
            lines[index] = line
            return replace(group, lines=tuple(lines))
    last = max((i for i, old in enumerate(lines) if split_entry(old)), default=-1)
    lines.insert(last + 1, line)
    return replace(group, lines=tuple(lines))


def drop_entries(group: Group, *keys: str, localized_only: bool = False) -> Group:
    """Remove these keys and their localized variants (Key[xx]), or only the variants."""
    def dropped(line: str) -> bool:
        entry = split_entry(line)
        if entry is None or entry[0].split("[", 1)[0] not in keys:
            return False
        return not (localized_only and entry[0] in keys)

    return replace(group, lines=tuple(line for line in group.lines if not dropped(line)))


# --- envbox's entries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """What makes an entry envbox's: its profile and, for a wrapped entry, the original."""

    profile: str
    source: str | None = None
    source_hash: str | None = None


def read_mark(text: str) -> Mark | None:
    """envbox's mark in a desktop file, or None when the file is not one of envbox's."""
    try:
        main = parse_desktop(text).group(MAIN_GROUP)
    except ValueError:
        return None
    profile = main.string(PROFILE_KEY) if main else None
    if not is_valid_name(profile):
        return None
    return Mark(profile, main.string(SOURCE_KEY), main.string(HASH_KEY))


def generated_file_name(profile: str) -> str:
    return f"envbox-{profile}.desktop"


def readable_name(profile: str) -> str:
    """'py-host' -> 'Py Host': a menu label for a profile with no desktop.name."""
    words = [w for w in profile.replace("_", "-").replace(".", "-").split("-") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or profile


def generate(profile: str, desktop: Desktop | None, *, launcher: str, description: str = "") -> str:
    """A new entry for a profile from its `desktop:` section (all of it optional); without one,
    from the profile's name (made readable) and description."""
    _check_profile(profile)
    argv: list[str] = [launcher, "launch", profile]
    if desktop and desktop.mime_types:
        argv += ["--", FieldCode("%U")]  # files and URLs go after '--': never options of envbox
    d = desktop
    try:
        fields = [
            ("Type", "Application"),
            ("Name", escape_string((d and d.name) or readable_name(profile))),
            ("GenericName", d and d.generic_name and escape_string(d.generic_name)),
            ("Comment", escape_string(d.comment) if d and d.comment else description and escape_string(description)),
            ("Icon", d and d.icon and escape_string(d.icon)),
            ("Exec", quote_exec(argv)),
            ("Terminal", "true" if d and d.terminal else "false"),
            ("Categories", d and d.categories and escape_list(d.categories)),
            ("MimeType", d and d.mime_types and escape_list(d.mime_types)),
            (PROFILE_KEY, profile),
        ]
    except ValueError as exc:
        raise DesktopError(f"cannot write the desktop entry of {profile}: {exc}", "fix the profile's desktop: section") from None
    lines = [
        f"# Written by 'envbox desktop install {profile}' from "
        + ("the profile's desktop: section." if desktop else "the profile's name and description (it has no desktop: section)."),
        f"[{MAIN_GROUP}]",
        *(f"{key}={value}" for key, value in fields if value),
    ]
    return "\n".join(lines) + "\n"


def wrap(original: str, *, profile: str, launcher: str, source: str, source_hash: str) -> str:
    """The original entry with every Exec run through `envbox run --profile NAME --`, TryExec
    and DBusActivatable dropped (both would bypass envbox), and envbox's mark added."""
    _check_profile(profile)
    try:
        doc = parse_desktop(original)
    except ValueError as exc:
        raise DesktopError(f"{source}: not a valid desktop entry: {exc}", "check it with desktop-file-validate") from None
    main = doc.group(MAIN_GROUP)
    if main is None or main.string("Type") != "Application":
        raise DesktopError(f"{source}: not an application entry (needs [{MAIN_GROUP}] with Type=Application)")
    if main.raw(PROFILE_KEY) is not None:
        raise DesktopError(f"{source} is already an envbox entry (profile {main.string(PROFILE_KEY)})", "wrap the application's own entry instead")
    prefix = [launcher, "run", "--profile", profile, "--"]
    groups = []
    try:
        for group in doc.groups:
            if group.name == MAIN_GROUP or group.name.startswith(ACTION_PREFIX):
                group = _wrap_exec(group, prefix, source)
            if group.name == MAIN_GROUP:
                group = drop_entries(group, "TryExec", "DBusActivatable")
                for key, value in ((PROFILE_KEY, profile), (SOURCE_KEY, source), (HASH_KEY, source_hash)):
                    group = set_entry(group, key, escape_string(value))
            groups.append(group)
    except ValueError as exc:  # from quoting or escaping what envbox adds
        raise DesktopError(f"cannot write the desktop entry of {profile}: {exc}") from None
    return render_desktop(replace(doc, groups=tuple(groups)))


def _wrap_exec(group: Group, prefix: list[str], source: str) -> Group:
    raw = group.raw("Exec")
    if raw is None:
        raise DesktopError(f"{source}: [{group.name}] has no Exec key (it starts over D-Bus only)", "envbox can wrap only entries that run a command")
    try:
        argv = parse_exec(raw)
    except ValueError as exc:
        raise DesktopError(f"{source}: cannot read the Exec of [{group.name}]: {exc}", "check it with desktop-file-validate") from None
    if not argv:
        raise DesktopError(f"{source}: the Exec of [{group.name}] is empty")
    group = set_entry(group, "Exec", quote_exec(prefix + argv))
    return drop_entries(group, "Exec", localized_only=True)  # an Exec[xx] would bypass envbox


def _check_profile(profile: str) -> None:
    # The name becomes an argument of envbox and a file name: it must follow envbox.names.
    if not is_valid_name(profile):
        raise DesktopError(f"bad profile name {profile!r} for a desktop entry")
