"""Profile name -> loaded profile, resolution, layers and Plan: the shared front half of commands."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .build import ensure_layers, find_layers, to_stored
from .catalog import Catalog, builtin_dir, load_catalog
from .lockfile import Lock, lock_path, read_lock
from .paths import Paths
from .plan import Plan, build_plan
from .profile import Profile, load_profile
from .resolve import Resolution, resolve
from .scopes import find_profile
from .store import Store


@dataclass(frozen=True)
class Prepared:
    profile: Profile
    resolution: Resolution
    plan: Plan
    lock: Lock | None


def catalog_dirs(paths: Paths) -> tuple:
    """Lowest precedence first: shipped, then system, then the user's catalog.d."""
    return (builtin_dir(), paths.system_catalogs, paths.user_catalogs)


def catalog_loader(paths: Paths) -> Callable[[], Catalog]:
    cached: list[Catalog] = []

    def load() -> Catalog:
        if not cached:
            cached.append(load_catalog(catalog_dirs(paths)))
        return cached[0]

    return load


def load_named(paths: Paths, name: str) -> Profile:
    ref = find_profile(paths, name)
    return load_profile(ref.path, ref.scope)


def prepare(
    paths: Paths,
    profile: Profile,
    *,
    build: bool,
    frozen: bool = False,
    progress: Callable[[str], None] = lambda m: None,
) -> Prepared:
    """Resolve the profile and find (or, with build=True, build) its layers."""
    lock = read_lock(lock_path(profile.path))
    if frozen and lock is None and any(t.constraint for t in profile.tools):
        from .errors import CatalogError

        raise CatalogError(f"--frozen: {profile.name} has no lock file", f"run 'envbox lock {profile.name}' first")
    resolution = resolve(profile, catalog_loader(paths), lock, frozen=frozen)
    store = Store(paths.store)
    if build:
        stored = {tool: to_stored(info) for tool, info in ensure_layers(resolution, store, paths, lock=lock, progress=progress).items()}
    else:
        stored = find_layers(resolution, store)
    plan = build_plan(resolution, stored, uid=os.getuid())
    return Prepared(profile, resolution, plan, lock)
