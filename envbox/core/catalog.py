"""The catalog: which releases of which tools exist and where they come from. Reads YAML files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from envbox.core import fields, yamlstrict
from envbox.core.errors import CatalogError

CATALOG_KEYS = ("tool", "releases")
RELEASE_KEYS = ("version", "source", "links", "post", "env", "description", "parts", "writable_prefix")
# Bump when the way a recipe becomes a layer changes, so old layers are not reused.
LAYER_FORMAT = 1


@dataclass(frozen=True)
class Release:
    tool: str
    version: str
    source_json: str  # canonical JSON of the `source:` mapping (frozen, hashable)
    links: tuple[tuple[str, str], ...] = ()  # layer path -> symlink target
    post: str = "[]"  # canonical JSON of the `post:` list
    env: tuple[tuple[str, str], ...] = ()
    description: str = ""
    origin: str = ""  # file:line it was read from
    parts: str = "{}"  # canonical JSON of `parts:` (optional pieces a profile picks with with/without)
    writable_prefix: str = ""  # env variable naming a writable per-profile prefix (npm_config_prefix)
    chosen: tuple[str, ...] = ()  # the parts merged in by select()
    extra_sources: str = "[]"  # canonical JSON: further sources filled into the same layer (parts)

    @property
    def part_specs(self) -> dict:
        return json.loads(self.parts)

    @property
    def sources(self) -> list:
        """Every source of the layer, the release's own first."""
        return [self.source, *json.loads(self.extra_sources)]

    def default_parts(self) -> tuple[str, ...]:
        return tuple(sorted(n for n, p in self.part_specs.items() if p.get("default")))

    def select(self, with_parts: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> "Release":
        """This release with its default parts, plus with_parts, minus without (core/parts.py)."""
        from envbox.core.parts import select

        return select(self, with_parts, without)

    @property
    def source(self) -> dict:
        return json.loads(self.source_json)

    @property
    def kind(self) -> str:
        return self.source["kind"]

    @property
    def post_steps(self) -> list:
        return json.loads(self.post)

    def recipe(self) -> dict:
        """Everything that determines the layer's bytes (its identity before it is built)."""
        return {
            "format": LAYER_FORMAT,
            "tool": self.tool,
            "version": self.version,
            "source": self.source,
            "links": dict(self.links),
            "post": self.post_steps,
            # Only when present, so the keys of releases without parts stay what they were.
            **({"sources": json.loads(self.extra_sources)} if self.extra_sources != "[]" else {}),
            **({"step_revisions": revised} if (revised := step_revisions(self.post_steps)) else {}),
        }

    def recipe_key(self) -> str:
        import hashlib

        text = json.dumps(self.recipe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def label(self) -> str:
        parts = "".join(f" +{p}" for p in self.chosen)
        return f"{self.tool} {self.version}{parts} ({self.kind} {source_summary(self.source)})".replace(" )", ")")


def source_summary(src: dict) -> str:
    """One short line saying where a release comes from. Pure."""
    if src.get("packages") and src["kind"] == "npm":
        return " + ".join(f"{p.get('package')}@{p.get('version')}" for p in src["packages"])
    if src["kind"] == "npm":
        return f"{src.get('package')}@{src.get('version')}"
    if src["kind"] == "deb":
        return f"{src.get('suite')}: {' '.join(src.get('packages', []))}"
    return str(src.get("requirement") or src.get("url") or "")


@dataclass(frozen=True)
class Catalog:
    releases: tuple[Release, ...]
    files: tuple[Path, ...]  # every file read (the launch-plan cache watches them)

    def tools(self) -> list[str]:
        return sorted({r.tool for r in self.releases})

    def of(self, tool: str) -> list[Release]:
        return sorted((r for r in self.releases if r.tool == tool), key=lambda r: _version_key(r.version))


def builtin_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "releases"


def catalog_files(dirs: tuple[Path, ...]) -> list[Path]:
    files = []
    for directory in dirs:
        try:
            files += sorted(p for p in directory.iterdir() if p.suffix == ".yaml" and not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return files


def load_catalog(dirs: tuple[Path, ...], source_checks: Mapping[str, Any]) -> Catalog:
    """Read catalogs, lowest precedence first; a later (tool, version) replaces an earlier one.

    source_checks maps each source kind to its pure spec check (envbox.sources.checks()): the
    catalog knows which kinds exist only through it, so the core imports no source module."""
    chosen: dict[tuple[str, str], Release] = {}
    files = []
    for directory in dirs:
        in_scope: dict[tuple[str, str], Release] = {}
        scope_files = catalog_files((directory,))
        for path in scope_files:
            for release in _read_file(path, source_checks):
                key = (release.tool, release.version)
                if key in in_scope:
                    # Within one directory there is no precedence to decide which one is meant.
                    raise CatalogError(
                        f"{release.origin}: {release.tool} {release.version} is defined twice in one catalog directory (also at {in_scope[key].origin})",
                        "remove one of them; a catalog in a later directory may override an earlier one",
                    )
                in_scope[key] = release
        chosen.update(in_scope)
        files += scope_files
    return Catalog(tuple(chosen.values()), tuple(files))


def _read_file(path: Path, source_checks: Mapping[str, Any]) -> list[Release]:
    try:
        data = yamlstrict.load(path).data
    except yamlstrict.YamlError as exc:
        raise CatalogError(f"{path}:{exc.line or 1}: {exc.message}") from None

    def fail(line: int, message: str) -> CatalogError:
        return CatalogError(f"{path}:{line}: {message}", "fix the catalog file; see 'The catalog' in the README")

    if not isinstance(data, dict):
        raise fail(1, "a catalog file must be a mapping with `tool:` and `releases:`")
    for key in data:
        if key not in CATALOG_KEYS:
            raise fail(data.key_lines[key], f"unknown key {key!r} (valid: tool, releases)")
    tool = data.get("tool")
    try:
        fields.name(tool, "tool name")
    except ValueError as exc:
        raise fail(data.key_lines.get("tool", data.line), str(exc)) from None
    releases = data.get("releases")
    if not isinstance(releases, list):
        raise fail(data.line, "releases must be a list")
    return [_read_release(tool, item, fail, source_checks, path) for item in releases]


def _read_release(tool: str, item: Any, fail, source_checks: Mapping[str, Any], path: Path) -> Release:
    line = getattr(item, "line", 1)
    if not isinstance(item, dict):
        raise fail(line, "each release must be a mapping")
    for key in item:
        if key not in RELEASE_KEYS:
            raise fail(item.key_lines[key], f"unknown key {key!r} in a release (valid: {', '.join(RELEASE_KEYS)})")
    version = item.get("version")
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise fail(line, f"release version must be a quoted string like \"2.7.18\", not {version!r}")
    source = item.get("source")
    if not isinstance(source, dict) or source.get("kind") not in source_checks:
        raise fail(line, f"source.kind must be one of: {', '.join(sorted(source_checks))}")
    try:
        source_checks[source["kind"]](source)
    except ValueError as exc:
        raise fail(item.key_lines.get("source", line), f"{tool} {version}: {exc}") from None
    links = _links(item, fail, line)
    env = _env(item, fail, line)
    try:
        description = fields.text(item.get("description") or "", "description")
    except ValueError as exc:
        raise fail(item.key_lines.get("description", line), str(exc)) from None
    post = item.get("post") or []
    try:
        check_steps(post)
    except ValueError as exc:
        raise fail(item.key_lines.get("post", line), f"{tool} {version}: {exc}") from None
    from envbox.core.parts import read_parts

    parts = read_parts(item.get("parts") or {}, source, fail, item.key_lines.get("parts", line), source_checks, f"{tool} {version}",
                       check_steps=check_steps, links=_links, env=_env)
    prefix = item.get("writable_prefix", "")
    if not isinstance(prefix, str) or (prefix and not _ENV_NAME_RE.fullmatch(prefix)):
        raise fail(item.key_lines.get("writable_prefix", line), f"writable_prefix must name an environment variable such as npm_config_prefix, not {prefix!r}")
    return Release(
        tool=tool,
        version=version,
        source_json=json.dumps(source, sort_keys=True),
        links=links,
        post=json.dumps(post, sort_keys=True),
        env=env,
        description=description,
        origin=f"{path}:{line}",
        parts=json.dumps(parts, sort_keys=True),
        writable_prefix=prefix,
    )


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_VERSION_RE = re.compile(r"[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)")


def _mapping(item: dict, key: str, fail, line: int, what: str) -> tuple[dict, int]:
    """item[key] as a mapping (empty when absent) and its line."""
    value = item.get(key)
    at = getattr(item, "key_lines", {}).get(key, line)
    if value is None:
        return {}, at
    if not isinstance(value, dict):
        raise fail(at, f"{key} must be a mapping of {what}, not {fields.kind_of(value)}")
    return value, at


def _env(item: dict, fail, line: int) -> tuple[tuple[str, str], ...]:
    """A release's env: the same rules as a profile's (fields.env_name, fields.env_value)."""
    env, at = _mapping(item, "env", fail, line, "NAME: value")
    out = []
    for key, value in env.items():
        where = getattr(env, "key_lines", {}).get(key, at)
        try:
            out.append((fields.env_name(key), fields.env_value(key, value)))
        except ValueError as exc:
            raise fail(where, str(exc)) from None
    return tuple(sorted(out))


def _links(item: dict, fail, line: int) -> tuple[tuple[str, str], ...]:
    """A release's links: a layer path (under usr/, etc/, opt/) -> a symlink target."""
    links, at = _mapping(item, "links", fail, line, "layer paths to link targets")
    out = []
    for path, target in links.items():
        where = getattr(links, "key_lines", {}).get(path, at)
        try:
            out.append((fields.layer_path(path, "link path"), fields.link_target(target, f"link target of {path}")))
        except ValueError as exc:
            raise fail(where, str(exc)) from None
    return tuple(sorted(out))


# ---- constraints ----------------------------------------------------------------------------


def _version_key(version: str):
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(version))
    except InvalidVersion:
        return (-1, version)


def matches(constraint: str, version: str) -> bool:
    """"2.7" means 2.7.*, "3" means 3.*, "latest" anything, else a PEP 440 specifier set. Pure."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    constraint = constraint.strip()
    if constraint == "latest":
        return True
    if re.fullmatch(r"[0-9]+(\.[0-9]+)*", constraint):
        want = constraint.split(".")
        return version.split(".")[: len(want)] == want
    try:
        return Version(version) in SpecifierSet(constraint)
    except InvalidSpecifier:
        raise CatalogError(
            f"bad version constraint {constraint!r}",
            'use "2.7", "3", ">=3.10,<3.13", "==3.13.5" or "latest"',
        ) from None
    except InvalidVersion:
        return False


def unknown_tool(tool: str, known: list[str]) -> CatalogError:
    """The error for a tool the catalog does not have, with the nearest name if one is close."""
    import difflib

    close = difflib.get_close_matches(tool, known, n=1, cutoff=0.6)
    hint = "run 'envbox catalog' to list tools and releases"
    if close:
        hint = f"did you mean {close[0]!r}? ({hint})"
    return CatalogError(f"no tool named {tool!r} in the catalog (known: {', '.join(known) or 'none'})", hint)


def pick(catalog: Catalog, tool: str, constraint: str) -> Release:
    """The highest release of `tool` matching `constraint`. Pure."""
    candidates = catalog.of(tool)
    if not candidates:
        raise unknown_tool(tool, catalog.tools())
    found = [r for r in candidates if matches(constraint, r.version)]
    if not found:
        available = ", ".join(r.version for r in candidates)
        raise CatalogError(
            f"no release of {tool} matches {constraint!r} (available: {available})",
            f"run 'envbox catalog {tool}' to see where releases come from",
        )
    return found[-1]


# ---- the steps named in a release's `post:` (run by envbox.store.postbuild) ------------------

STEP_KINDS = ("pycompile", "python-site", "python-host-site", "python-own-site", "console-scripts", "ensurepip-wheels", "gcc-private-runtime")
# A step whose output changed is given its next revision here: the recipes that use it get new
# keys, so stores rebuild those layers and a lock written before reads as out of date (the same
# key with other bytes would be refused as a changed source). Revision 1 is never written.
STEP_REVISIONS = {"python-own-site": 2}  # 2: also unloads what the host's .pth files imported
PYTHON_NAME = r"python([23])\.([0-9]{1,2})"  # an interpreter a pycompile step names
GCC_RUNTIME = r"([0-9]{1,2})@([a-z0-9][a-z0-9._-]{0,63})"  # gcc-private-runtime: MAJOR@PRIVATE_TAG


def step_revisions(steps: list) -> dict[str, int]:
    """The revisions (above 1) of the step kinds a post list uses. Pure."""
    return {kind: STEP_REVISIONS[kind] for step in steps for kind in step if kind in STEP_REVISIONS}


def check_steps(steps: Any) -> None:
    """Validate a release's `post:` list (already parsed YAML); ValueError names the bad step. Pure."""
    if not isinstance(steps, list):
        raise ValueError("post must be a list of steps such as {pycompile: python3.13}")
    for step in steps:
        if not isinstance(step, dict) or len(step) != 1:
            raise ValueError(f"each post step is a one-key mapping such as {{pycompile: python3.13}}, not {step!r}")
        (kind, arg), = step.items()
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown post step {kind!r} (known: {', '.join(STEP_KINDS)})")
        if kind == "gcc-private-runtime":
            if not isinstance(arg, str) or not re.fullmatch(GCC_RUNTIME, arg):
                raise ValueError(f"gcc-private-runtime takes GCC_MAJOR@TAG such as 14@trixie, not {arg!r}")
        elif not isinstance(arg, str) or not re.fullmatch(PYTHON_NAME, arg):
            raise ValueError(f"{kind} takes an interpreter name such as python3.13, not {arg!r}")
