"""Profile YAML -> a validated, frozen Profile. Reads one file; everything else is pure."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envbox.core import fields, yamlstrict
from envbox.core.errors import ProfileError
from envbox.core.limits import Limits
from envbox.core.names import NAME_RULE, describe_bad_name, is_valid_name, project_default_name

PROFILE_KEYS = ("name", "description", "command", "tools", "env", "limits", "desktop", "extends", "prefer", "single_instance")
LIMIT_KEYS = ("memory", "memory_swap", "cpu", "pids", "allow_unenforced")
DESKTOP_KEYS = ("name", "icon", "comment", "categories", "mime_types", "from", "terminal", "generic_name")
SOURCE_KEYS = ("host", "dir", "version", "with", "without")
SINGLE_INSTANCE_KEYS = ("lock", "socket", "dbus", "separate_with")
# Where a single-instance path may start: absolute, the home directory, or the user's config
# directory (as the apps themselves find it: $XDG_CONFIG_HOME, else ~/.config).
PATH_PREFIXES = ("/", "~/", "$XDG_CONFIG_HOME/")


@dataclass(frozen=True)
class ToolSpec:
    """One entry of `tools:`: a catalog constraint or an inline source."""

    tool: str
    constraint: str | None = None  # "2.7", ">=3.10,<3.13", "latest"
    host: str | None = None  # {host: /usr/bin/python3.11}
    dir: str | None = None  # {dir: /opt/node-v18}
    line: int = 0
    with_parts: tuple[str, ...] = ()  # {version: "3.13", with: [dev, venv]}: optional parts taken
    without: tuple[str, ...] = ()  # default parts left out, e.g. [python3]: keep the host's python3

    def describe(self) -> str:
        if self.host:
            return f"host:{self.host}"
        if self.dir:
            return f"dir:{self.dir}"
        parts = "".join(f" +{p}" for p in self.with_parts) + "".join(f" -{p}" for p in self.without)
        return f"{self.constraint}{parts}"


@dataclass(frozen=True)
class Desktop:
    name: str | None = None
    icon: str | None = None
    comment: str | None = None
    generic_name: str | None = None
    categories: tuple[str, ...] = ()
    mime_types: tuple[str, ...] = ()
    source: str | None = None  # `from:` an existing .desktop entry to wrap
    terminal: bool = False


@dataclass(frozen=True)
class SingleInstance:
    """How to tell that the app already runs (it would take over a second start and exit)."""

    lock: str | None = None  # a lock symlink or file naming the holder: "HOST-PID" (Chromium)
    socket: str | None = None  # the unix socket the running instance listens on
    dbus: str | None = None  # a D-Bus name the running instance owns on the session bus
    separate_with: str | None = None  # an option that makes the app use another directory

    def to_json(self) -> dict:
        return {"lock": self.lock, "socket": self.socket, "dbus": self.dbus, "separate_with": self.separate_with}


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    scope: str  # bundled | system | user | project
    sha256: str  # of the exact bytes parsed
    description: str = ""
    command: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    limits: Limits = field(default_factory=Limits)
    allow_unenforced: bool = False  # run (with a warning) when a limit cannot be enforced
    desktop: Desktop | None = None
    extends: str | None = None
    prefer: tuple[tuple[str, str], ...] = ()  # path -> tool that wins a conflict
    single_instance: SingleInstance | None = None
    lines: tuple[tuple[str, int], ...] = ()  # top-level key -> line, for messages
    origins: tuple[tuple[str, tuple], ...] = ()  # (file, stat signature before reading) of every file merged in
    field_origins: tuple[tuple[str, str], ...] = ()  # "tools.python" -> "file:line" it came from


def load_profile(path: Path, scope: str) -> Profile:
    """Read and validate one profile file. Raises ProfileError naming file:line."""
    try:
        doc = yamlstrict.load(path)
    except yamlstrict.YamlError as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise ProfileError(f"{where}: {exc.message}", "fix the file; see 'Profile format' in the README") from None
    profile = profile_from_data(doc.data, path=path, scope=scope, sha256=doc.sha256)
    return replace(profile, origins=((str(path), tuple(doc.signature)),))


def load_project_profile(path: Path, data: bytes, sha256: str, signature: tuple) -> tuple[Profile, list[str]]:
    """Parse a project file's exact bytes (already trust-checked). Returns (profile, warnings).

    Settings that change security are ignored in project files: a cloned repository must not be
    able to switch off the limits a user relies on.
    """
    try:
        parsed = yamlstrict.parse(data)
    except yamlstrict.YamlError as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise ProfileError(f"{where}: {exc.message}", "fix the file; see 'Profile format' in the README") from None
    profile = profile_from_data(parsed, path=path, scope="project", sha256=sha256)
    profile = replace(profile, origins=((str(path), tuple(signature)),))
    warnings = []
    if profile.allow_unenforced:
        warnings.append(f"{path}: limits.allow_unenforced is ignored in project files (it would let a project turn its limits off)")
        profile = replace(profile, allow_unenforced=False)
    return profile, warnings


def merge(base: Profile, child: Profile) -> Profile:
    """child `extends:` base. Pure. Rules (README "extends"): the child's command, description
    and desktop replace the base's when given; tools, env and prefer are merged key by key with
    the child winning; limits are merged per limit; allow_unenforced comes from the child only."""
    def merged(a: tuple, b: tuple) -> tuple:
        out = dict(a)
        out.update(b)
        return tuple(out.items())

    base_tools = {t.tool: t for t in base.tools}
    base_tools.update({t.tool: t for t in child.tools})
    limits = Limits(**{
        k: getattr(child.limits, k) if getattr(child.limits, k) is not None else getattr(base.limits, k)
        for k in ("memory", "memory_swap", "cpu", "pids")
    })
    return replace(
        child,
        description=child.description or base.description,
        command=child.command or base.command,
        tools=tuple(base_tools.values()),
        env=merged(base.env, child.env),
        limits=limits,
        desktop=child.desktop or base.desktop,
        single_instance=child.single_instance or base.single_instance,
        prefer=merged(base.prefer, child.prefer),
        extends=None,
        origins=child.origins + base.origins,
        field_origins=tuple({**dict(base.field_origins), **dict(child.field_origins)}.items()),
    )


def profile_from_data(data: Any, *, path: Path, scope: str, sha256: str) -> Profile:
    """Validate parsed YAML into a Profile. Pure."""
    v = _Validator(path)
    if data is None:
        raise v.error(1, "the file is empty", "a profile needs at least `command:` and usually `tools:`")
    if not isinstance(data, dict):
        raise v.error(getattr(data, "line", 1), "a profile must be a mapping of keys to values")
    v.check_keys(data, PROFILE_KEYS, "profile")
    if scope == "project":
        default_name = project_default_name(str(path))
    else:
        default_name = path.name.removesuffix(".yaml").removesuffix(".yml")
    name = data.get("name", default_name)
    if not is_valid_name(name):
        raise v.error(
            v.line(data, "name"),
            f"bad profile name {describe_bad_name(name)}",
            f"names use {NAME_RULE}",
        )
    return Profile(
        name=name,
        path=path,
        scope=scope,
        sha256=sha256,
        description=v.string(data, "description", default=""),
        command=v.argv(data, "command"),
        tools=v.tools(data),
        env=v.env(data),
        limits=v.limits(data),
        allow_unenforced=v.allow_unenforced(data),
        desktop=v.desktop(data),
        extends=v.optional_name(data, "extends"),
        prefer=v.prefer(data),
        single_instance=v.single_instance(data),
        lines=tuple((k, v.line(data, k)) for k in data),
        field_origins=_field_origins(data, path),
    )


def _field_origins(data: dict, path: Path) -> tuple[tuple[str, str], ...]:
    """Where each field was written: top-level keys, and each entry of tools/env/limits."""
    out = []
    lines = getattr(data, "key_lines", {})
    for key in data:
        value = data[key]
        if key in ("tools", "env", "limits") and isinstance(value, dict):
            sub = getattr(value, "key_lines", {})
            out += [(f"{key}.{k}", f"{path}:{sub.get(k, lines.get(key, 0))}") for k in value]
        else:
            out.append((key, f"{path}:{lines.get(key, 0)}"))
    return tuple(out)


class _Validator:
    """Field checks that turn bad values into one-line errors with file:line."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, line: int | None, message: str, hint: str | None = None) -> ProfileError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return ProfileError(f"{where}: {message}", hint)

    @staticmethod
    def line(mapping: Any, key: str) -> int:
        lines = getattr(mapping, "key_lines", None) or {}
        return lines.get(key, getattr(mapping, "line", 0))

    def check_keys(self, mapping: dict, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(allowed)}"
                raise self.error(self.line(mapping, key), f"unknown key {key!r} in {what}", hint)

    def string(self, mapping: dict, key: str, *, default: str | None = None, where: str = "") -> str | None:
        if key not in mapping or mapping[key] is None and default is not None:
            return default
        try:
            return fields.text(mapping[key], f"{where}{key}")
        except ValueError as exc:
            raise self.error(self.line(mapping, key), str(exc)) from None

    def optional_name(self, mapping: dict, key: str) -> str | None:
        value = self.string(mapping, key)
        if value is not None and not is_valid_name(value):
            raise self.error(self.line(mapping, key), f"bad profile name {describe_bad_name(value)} in {key}", f"names use {NAME_RULE}")
        return value

    def argv(self, mapping: dict, key: str) -> tuple[str, ...]:
        if key not in mapping:
            return ()
        value = mapping[key]
        line = self.line(mapping, key)
        if isinstance(value, str):
            raise self.error(line, f"{key} must be a list of arguments, not a string", f'write it as {key}: [{", ".join(value.split()) or "..."}]')
        if not isinstance(value, list) or not value:
            raise self.error(line, f"{key} must be a non-empty list of strings")
        for item in value:
            if not isinstance(item, str) or not item or "\x00" in item:
                hint = "quote it, e.g. \"true\" or \"3\"" if isinstance(item, (bool, int, float)) else None
                raise self.error(line, f"{key} items must be non-empty strings, found {_kind(item)}", hint)
        return tuple(value)

    def tools(self, data: dict) -> tuple[ToolSpec, ...]:
        tools = data.get("tools")
        if tools is None:
            return ()
        if not isinstance(tools, dict):
            raise self.error(self.line(data, "tools"), f"tools must be a mapping of tool names to versions, not {_kind(tools)}")
        return tuple(self.tool(tools, name) for name in tools)

    def tool(self, tools: dict, name: str) -> ToolSpec:
        line = self.line(tools, name)
        if not is_valid_name(name):
            raise self.error(line, f"bad tool name {describe_bad_name(name)}", f"names use {NAME_RULE}")
        value = tools[name]
        if isinstance(value, float):
            raw = tools.raw.get(name, str(value)) if hasattr(tools, "raw") else str(value)
            raise self.error(line, f"version {raw} of {name} is read by YAML as the number {value!r}", f'quote it: {name}: "{raw}"')
        if isinstance(value, int) and not isinstance(value, bool):
            raw = tools.raw.get(name, str(value)) if hasattr(tools, "raw") else str(value)
            raise self.error(line, f"version {raw} of {name} must be a string", f'quote it: {name}: "{raw}"')
        if isinstance(value, str):
            if not value.strip():
                raise self.error(line, f"empty version for {name}", 'use a version such as "2.7" or "latest"')
            return ToolSpec(tool=name, constraint=value.strip(), line=line)
        if isinstance(value, dict):
            self.check_keys(value, SOURCE_KEYS, f"tools.{name}")
            if "version" in value:
                return self.tool_with_parts(name, value, line)
            if "with" in value or "without" in value:
                raise self.error(line, f"tools.{name}: with/without go with a version", f'write {name}: {{version: "3", with: [...]}}')
            if len(value) != 1:
                raise self.error(line, f"tools.{name} needs exactly one of: version, host, dir")
            kind = next(iter(value))
            target = value[kind]
            try:
                fields.absolute_path(target, f"tools.{name}.{kind}")
            except ValueError as exc:
                raise self.error(self.line(value, kind), str(exc)) from None
            return ToolSpec(tool=name, line=line, **{kind: target})
        raise self.error(line, f"tools.{name} must be a version string or a mapping, not {_kind(value)}")

    def tool_with_parts(self, name: str, value: dict, line: int) -> ToolSpec:
        """{version: "2.7", with: [pip, dev], without: [python3]}: a catalog release and its parts."""
        for other in ("host", "dir"):
            if other in value:
                raise self.error(self.line(value, other), f"tools.{name}: version and {other} exclude each other")
        if isinstance(value["version"], (dict, list)) or value["version"] is None:
            raise self.error(self.line(value, "version"), f"tools.{name}.version must be a version string such as \"3.13\"")
        spec = self.tool(_One(value, "version", name), name)
        lists = {}
        for key in ("with", "without"):
            items = value.get(key, [])
            if not isinstance(items, list) or not all(is_valid_name(i) for i in items):
                raise self.error(self.line(value, key), f"tools.{name}.{key} must be a list of part names such as [pip, dev]", f"run 'envbox catalog {name}' to see the parts")
            lists[key] = tuple(dict.fromkeys(items))
        both = set(lists["with"]) & set(lists["without"])
        if both:
            raise self.error(self.line(value, "without"), f"tools.{name}: {', '.join(sorted(both))} is both in with and without")
        return replace(spec, line=line, with_parts=lists["with"], without=lists["without"])

    def env(self, data: dict) -> tuple[tuple[str, str], ...]:
        env = data.get("env")
        if env is None:
            return ()
        if not isinstance(env, dict):
            raise self.error(self.line(data, "env"), f"env must be a mapping of NAME: value, not {_kind(env)}", "write env: {NAME: value}")
        out = []
        for key, value in env.items():
            line = self.line(env, key)
            try:
                fields.env_name(key)
            except ValueError as exc:
                raise self.error(line, str(exc)) from None
            try:
                out.append((key, fields.env_value(key, value)))
            except ValueError as exc:
                raise self.error(line, str(exc), f'quote it: {key}: "..."') from None
        return tuple(out)

    def limits(self, data: dict) -> Limits:
        from envbox.core.limits import parse_size

        limits = data.get("limits")
        if limits is None:
            return Limits()
        if not isinstance(limits, dict):
            raise self.error(self.line(data, "limits"), f"limits must be a mapping, not {_kind(limits)}")
        self.check_keys(limits, LIMIT_KEYS, "limits")
        values: dict[str, Any] = {}
        for key in ("memory", "memory_swap"):
            if limits.get(key) is not None:
                try:
                    values[key] = parse_size(limits[key])
                except ValueError as exc:
                    raise self.error(self.line(limits, key), f"limits.{key}: {exc}", "use bytes or a K, M, G, T suffix, e.g. 2G") from None
        if limits.get("cpu") is not None:
            try:
                values["cpu"] = parse_cpu(limits["cpu"])
            except ValueError as exc:
                raise self.error(self.line(limits, "cpu"), f"limits.cpu: {exc}", "use a number of cores, e.g. 1.5") from None
        if limits.get("pids") is not None:
            pids = limits["pids"]
            if isinstance(pids, bool) or not isinstance(pids, int) or not 1 <= pids <= 4194304:
                raise self.error(self.line(limits, "pids"), f"limits.pids must be a whole number from 1 to 4194304, not {pids!r}")
            values["pids"] = pids
        return Limits(**values)

    def allow_unenforced(self, data: dict) -> bool:
        limits = data.get("limits")
        allow = limits.get("allow_unenforced", False) if isinstance(limits, dict) else False
        if not isinstance(allow, bool):
            raise self.error(self.line(limits, "allow_unenforced"), "limits.allow_unenforced must be true or false")
        return allow

    def desktop(self, data: dict) -> Desktop | None:
        desk = data.get("desktop")
        if desk is None:
            return None
        if not isinstance(desk, dict):
            raise self.error(self.line(data, "desktop"), f"desktop must be a mapping, not {_kind(desk)}")
        self.check_keys(desk, DESKTOP_KEYS, "desktop")
        lists = {}
        for key in ("categories", "mime_types"):
            value = desk.get(key, [])
            if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
                raise self.error(self.line(desk, key), f"desktop.{key} must be a list of strings")
            lists[key] = tuple(value)
        terminal = desk.get("terminal", False)
        if not isinstance(terminal, bool):
            raise self.error(self.line(desk, "terminal"), "desktop.terminal must be true or false")
        source = self.string(desk, "from", where="desktop.")
        if source is not None:
            try:
                fields.absolute_path(source, "desktop.from (a .desktop file)")
            except ValueError as exc:
                raise self.error(self.line(desk, "from"), str(exc)) from None
        return Desktop(
            name=self.string(desk, "name", where="desktop."),
            icon=self.string(desk, "icon", where="desktop."),
            comment=self.string(desk, "comment", where="desktop."),
            generic_name=self.string(desk, "generic_name", where="desktop."),
            categories=lists["categories"],
            mime_types=lists["mime_types"],
            source=source,
            terminal=terminal,
        )

    def single_instance(self, data: dict) -> SingleInstance | None:
        si = data.get("single_instance")
        if si is None:
            return None
        if not isinstance(si, dict):
            raise self.error(self.line(data, "single_instance"), f"single_instance must be a mapping, not {_kind(si)}",
                             "e.g. single_instance: {lock: ~/.config/google-chrome/SingletonLock}")
        self.check_keys(si, SINGLE_INSTANCE_KEYS, "single_instance")
        values = {key: self.string(si, key, where="single_instance.") for key in SINGLE_INSTANCE_KEYS}
        if not any(values[k] for k in ("lock", "socket", "dbus")):
            raise self.error(self.line(data, "single_instance"), "single_instance needs at least one of: lock, socket, dbus")
        for key in ("lock", "socket"):
            value = values[key]
            if value is None:
                continue
            rest = next((value[len(p):] for p in PATH_PREFIXES if value.startswith(p)), None)
            parts = (rest or "").split("/")
            if rest is None or not rest or "\x00" in value or any(part in ("", ".", "..") for part in parts):
                raise self.error(self.line(si, key), f"single_instance.{key} must be a path starting with /, ~/ or $XDG_CONFIG_HOME/ (no '.', '..' or empty parts), not {value!r}")
        name = values["dbus"]
        if name is not None and not _is_bus_name(name):
            raise self.error(self.line(si, "dbus"), f"single_instance.dbus must be a well-known D-Bus name such as org.mozilla.firefox, not {name!r}")
        option = values["separate_with"]
        if option is not None and (not option.startswith("-") or len(option) < 2 or any(c in option for c in " =\x00")):
            raise self.error(self.line(si, "separate_with"), f"single_instance.separate_with must be an option such as --user-data-dir, not {option!r}")
        return SingleInstance(**values)

    def prefer(self, data: dict) -> tuple[tuple[str, str], ...]:
        prefer = data.get("prefer")
        if prefer is None:
            return ()
        if not isinstance(prefer, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prefer.items()):
            raise self.error(self.line(data, "prefer"), "prefer must map paths to tool names, e.g. prefer: {/usr/bin/npm: node}")
        return tuple(prefer.items())


def _is_bus_name(name: str) -> bool:
    """A well-known D-Bus name: 2+ dot-separated elements of [A-Za-z0-9_-], none starting with
    a digit, at most 255 characters (D-Bus specification, "Bus names")."""
    elements = name.split(".")
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    return (0 < len(name) <= 255 and len(elements) >= 2
            and all(e and not e[0].isdigit() and set(e) <= ok for e in elements))


class _One(dict):
    """{tool: value} for re-checking a `version:` with the same rules as `tool: "3"`."""

    def __init__(self, mapping: dict, key: str, name: str):
        super().__init__({name: mapping[key]})
        self.key_lines = {name: _Validator.line(mapping, key)}
        self.line = self.key_lines[name]
        raw = getattr(mapping, "raw", None)
        if raw and key in raw:
            self.raw = {name: raw[key]}


def parse_cpu(value: Any) -> float:
    """Cores as a number: 1.5, "0.5", 2. Pure."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number of cores, not {_kind(value)}")
    try:
        cores = float(value)
    except ValueError:
        raise ValueError(f"expected a number of cores, not {value!r}") from None
    if not math.isfinite(cores) or not 0.01 <= cores <= 4096:
        raise ValueError(f"{value!r} is out of range (0.01 to 4096 cores)")
    return cores


_kind = fields.kind_of
