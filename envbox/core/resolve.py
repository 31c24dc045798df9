"""Profile tools -> concrete releases or inline sources, in a defined order. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

from envbox.core.catalog import Catalog, Release, matches, pick
from envbox.core.errors import CatalogError
from envbox.core.lockfile import Lock
from envbox.core.profile import Profile, ToolSpec


@dataclass(frozen=True)
class Resolved:
    """One tool of a profile, resolved: a catalog release, a host link, or a local prefix."""

    spec: ToolSpec
    release: Release | None = None
    links: tuple[tuple[str, str], ...] = ()  # host: usr/bin/<tool> -> the host binary
    prefix: str | None = None  # dir: mounted as-is over /usr

    @property
    def kind(self) -> str:
        return "catalog" if self.release else ("host" if self.links else "dir")

    def recipe_key(self) -> str | None:
        """The store key of the layer this tool needs (None for a dir prefix, used in place)."""
        if self.release:
            return self.release.recipe_key()
        if self.links:
            text = json.dumps({"format": 1, "links": dict(self.links)}, sort_keys=True)
            return hashlib.sha256(text.encode()).hexdigest()
        return None

    def label(self) -> str:
        if self.release:
            return self.release.label()
        if self.links:
            return f"{self.spec.tool} -> {self.spec.host} (host)"
        return f"{self.spec.tool} from {self.prefix} (dir)"


@dataclass(frozen=True)
class Resolution:
    profile: Profile
    tools: tuple[Resolved, ...]  # in profile order: the first is the lowest layer


def resolve(profile: Profile, catalog: Callable[[], Catalog], lock: Lock | None = None, *, frozen: bool = False) -> Resolution:
    """Resolve every tool. The catalog is loaded only if some tool needs it."""
    out = []
    for spec in profile.tools:
        if spec.host:
            out.append(Resolved(spec, links=((f"usr/bin/{spec.tool}", spec.host),)))
        elif spec.dir:
            out.append(Resolved(spec, prefix=spec.dir.rstrip("/") or "/"))
        else:
            releases = catalog()  # a broken catalog file is its own file:line, not the profile's
            try:
                release = _pick(profile, spec, releases, lock, frozen=frozen)
            except CatalogError as exc:
                raise _located(profile, spec, exc) from None
            out.append(Resolved(spec, release=release))
    return Resolution(profile, tuple(out))


def _located(profile: Profile, spec: ToolSpec, exc: CatalogError) -> CatalogError:
    """The error with the file:line of the tool's entry (through extends, the file it came from)."""
    where = dict(profile.field_origins).get(f"tools.{spec.tool}")
    if not where and profile.path and spec.line:
        where = f"{profile.path}:{spec.line}"
    if not where or exc.message.startswith(where):
        return exc
    return CatalogError(f"{where}: {exc.message}", exc.hint, exit_code=exc.exit_code)


def _pick(profile: Profile, spec: ToolSpec, catalog: Catalog, lock: Lock | None, *, frozen: bool) -> Release:
    assert spec.constraint is not None
    locked = lock.tools.get(spec.tool) if lock else None
    if locked is not None:
        for release in catalog.of(spec.tool):
            if release.version == locked.version:
                release = release.select(spec.with_parts, spec.without)
            if release.version == locked.version and release.recipe_key() == locked.recipe_key:
                if not matches(spec.constraint, release.version):
                    break  # the profile changed since the lock was written
                return release
        if frozen:
            raise CatalogError(
                f"{profile.name}.lock pins {spec.tool} {locked.version}, which the profile or catalog no longer offers",
                f"run 'envbox lock {profile.name}' to update the lock, or drop --frozen",
            )
    elif frozen:
        raise CatalogError(f"{profile.name}.lock has no entry for {spec.tool}", f"run 'envbox lock {profile.name}'")
    return pick(catalog, spec.tool, spec.constraint).select(spec.with_parts, spec.without)
