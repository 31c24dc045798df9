"""Profile name -> loaded profile, resolution, layers and Plan: the shared front half of commands."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envbox.store.build import ensure_layers, find_layers, to_stored
from envbox.core.catalog import Catalog, builtin_dir, load_catalog
from envbox.sources import checks as source_checks
from envbox.core.lockfile import Lock, lock_path, read_lock
from envbox.config.paths import Paths
from envbox.core.plan import Plan, build_plan
from envbox.core.profile import Profile, load_profile
from envbox.core.resolve import Resolution, resolve
from envbox.config.scopes import find_profile  # noqa: F401  (re-exported for the CLI)
from envbox.store.layers import Store


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
            cached.append(load_catalog(catalog_dirs(paths), source_checks()))
        return cached[0]

    return load


def plan_inputs(paths: Paths, profile: Profile) -> list:
    """The files a plan for profile depends on, with their stat signatures now (fast path)."""
    from envbox.core.catalog import catalog_files
    from envbox.core.digests import signature
    from envbox.config.scopes import scope_dirs

    from envbox.desktop.files import user_place

    # The applications directory: a new envbox entry there must be protected in the next launch.
    watched = [lock_path(profile.path), user_place(os.environ).directory]
    if profile.scope == "project":
        from envbox.config.trust import record_path

        watched.append(record_path(paths.trust_dir, profile.path))
    # A new profile in a higher scope would win, for this name and every name it extends.
    names = {profile.name} if profile.scope != "project" else set()
    names |= {Path(path).stem for path, _ in profile.origins[1:]}
    for name in sorted(names):
        watched += [directory / f"{name}.yaml" for _, directory in scope_dirs(paths)]
    if any(t.constraint for t in profile.tools):
        dirs = catalog_dirs(paths)
        watched += [*dirs, *catalog_files(dirs)]
    # The profile files themselves: signatures taken before they were read.
    return [(path, list(sig)) for path, sig in profile.origins] + [(str(p), signature(str(p))) for p in watched]


MAX_EXTENDS = 16


def load_named(paths: Paths, name: str) -> Profile:
    """A profile from the bundled, system or user scope, with its `extends:` chain merged."""
    ref = find_profile(paths, name)
    profile = load_profile(ref.path, ref.scope)
    if profile.name != ref.name:
        from envbox.core.errors import ProfileError

        raise ProfileError(f"{ref.path}: name {profile.name!r} differs from the file name {ref.name!r}", f"rename the file to {profile.name}.yaml or drop the name: key")
    return with_extends(paths, profile)


def with_extends(paths: Paths, profile: Profile) -> Profile:
    """Merge the chain of `extends:` (named profiles only), refusing cycles and long chains."""
    from envbox.core.errors import ProfileError
    from envbox.core.profile import merge

    chain = [profile]
    seen = {(profile.scope, str(profile.path))}
    while chain[-1].extends:
        if len(chain) > MAX_EXTENDS:
            raise ProfileError(f"{profile.path}: extends chain is longer than {MAX_EXTENDS} profiles", "flatten the chain")
        ref = find_profile(paths, chain[-1].extends)
        if (ref.scope, str(ref.path)) in seen:
            names = " -> ".join(p.name for p in chain) + f" -> {ref.name}"
            raise ProfileError(f"{profile.path}: extends cycle: {names}", "remove one of the extends: keys")
        seen.add((ref.scope, str(ref.path)))
        chain.append(load_profile(ref.path, ref.scope))
    result = chain[-1]
    for child in reversed(chain[:-1]):
        result = merge(result, child)
    return result


def load_project(paths: Paths, environ, cwd: str | None = None, *, require_trust: bool = True) -> tuple[Profile, list[str]]:
    """The project file found from cwd, trust-checked, with extends merged. (profile, warnings)"""
    from envbox.config import project
    from envbox.config import trust
    from envbox.core.errors import ProfileError
    from envbox.core.profile import load_project_profile

    try:
        found = project.find(environ, cwd)
    except project.ProjectError as exc:
        raise ProfileError(exc.message, exc.hint) from None
    if found is None:
        raise ProfileError(
            "no envbox.yaml here or in a parent directory (the search stops at $HOME and $ENVBOX_CEILING_PATHS)",
            "create envbox.yaml, or name a profile with --profile NAME",
        )
    pf = trust.read_project_file(Path(found), uid=os.getuid())
    if require_trust:
        trust.require_trusted(paths.trust_dir, pf)
    profile, warnings = load_project_profile(pf.path, pf.data, pf.sha256, pf.signature)
    return with_extends(paths, profile), warnings


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
    if frozen and lock is None:  # one rule for every profile, catalog tools or not
        from envbox.core.errors import CatalogError

        raise CatalogError(f"--frozen: {profile.name} has no lock file", f"run 'envbox lock {profile.name}' first")
    resolution = resolve(profile, catalog_loader(paths), lock, frozen=frozen)
    store = Store(paths.store)
    if build:
        infos = ensure_layers(resolution, store, paths, lock=lock, progress=progress)
        _check_conflicts(profile, resolution, infos, store)
        stored = {tool: to_stored(info) for tool, info in infos.items()}
    else:
        stored = find_layers(resolution, store)
    _refuse_damaged(paths, resolution, stored)
    plan = build_plan(resolution, stored, uid=os.getuid(), prefix_root=str(paths.prefixes))
    for prefix in plan.prefixes:
        os.makedirs(prefix, mode=0o755, exist_ok=True)
    return Prepared(profile, resolution, plan, lock)


def _refuse_damaged(paths: Paths, resolution: Resolution, stored: dict) -> None:
    """A layer that failed verification is never used until it is whole again or repaired."""
    from envbox.core.errors import EnvboxError
    from envbox.store import damage

    for item in resolution.tools:
        layer = stored.get(item.spec.tool)
        if layer is not None and damage.is_marked(paths.store, layer.digest):
            raise EnvboxError(
                f"the layer of {item.label()} ({layer.digest[:16]}) failed verification",
                "run 'envbox repair' to remove it and build it again",
            )


def _check_conflicts(profile: Profile, resolution: Resolution, infos: dict, store: Store) -> None:
    from envbox.core import conflicts

    if len(infos) < 2:
        return
    order = tuple(t.spec.tool for t in resolution.tools if t.spec.tool in infos)
    labels = {t.spec.tool: t.label() for t in resolution.tools}
    manifests = {tool: store.manifest(info.digest) for tool, info in infos.items()}
    conflicts.check(profile, order, labels, manifests)


def remember_project(paths: Paths, profile: Profile) -> None:
    """Note a project file that launched, so `envbox gc` keeps the layers it uses."""
    import json

    from envbox.core.digests import path_key

    directory = paths.state_dir / "projects"
    record = directory / (path_key(profile.path) + ".json")
    if record.exists():
        return
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # _known_projects reads only a private dir
        from envbox.fsio import write_atomic

        write_atomic(record, json.dumps({"path": str(profile.path)}).encode(), mode=0o600, fsync=False)
    except OSError:
        pass  # only gc's knowledge suffers


def _known_projects(paths: Paths) -> list[Profile]:
    """Trusted project files that launched before and still exist (records of others go)."""
    import json

    from envbox.config import trust
    from envbox.core.errors import EnvboxError
    from envbox.core.profile import load_project_profile

    out = []
    directory = paths.state_dir / "projects"
    from envbox import fsio

    if fsio.private_dir_problem(directory):
        return out  # not ours: nothing in it is read (envbox gc says so through doctor)
    for record in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = fsio.read_limited(record, limit=64 << 10)[0]
            path = Path(json.loads(data)["path"])
            pf = trust.read_project_file(path, uid=os.getuid())
            if not trust.is_trusted(paths.trust_dir, pf):
                raise EnvboxError("no longer trusted")
            out.append(with_extends(paths, load_project_profile(pf.path, pf.data, pf.sha256, pf.signature)[0]))
        except (OSError, fsio.FileRefused, ValueError, KeyError, TypeError, EnvboxError):
            record.unlink(missing_ok=True)
    return out


def profiles_in_use(paths: Paths, problems: list | None = None) -> list[tuple[str, Lock | None, Resolution | None]]:
    """(name, lock, resolution) for every named profile that is not shadowed and every trusted
    project file that launched before.

    A profile that cannot be loaded or resolved (a typo, a broken catalog) may still use
    layers nobody can name: its resolution is None, its lock (if readable) still counts, and it
    is added to problems as (name, message), so that gc can refuse to remove anything rather
    than guess. `envbox list` reports the same profiles as broken."""
    from envbox.core.errors import EnvboxError
    from envbox.config.scopes import all_profiles

    load = catalog_loader(paths)

    def note(name: str, exc: EnvboxError) -> None:
        if problems is not None:
            problems.append((name, exc.message))

    def locked(name: str, path: Path) -> Lock | None:
        try:
            return read_lock(lock_path(path))
        except EnvboxError as exc:
            note(name, exc)
            return None

    out: list[tuple[str, Lock | None, Resolution | None]] = []
    profiles = []
    for ref, shadow in all_profiles(paths):
        if shadow is None:
            try:
                profiles.append(with_extends(paths, load_profile(ref.path, ref.scope)))
            except EnvboxError as exc:
                note(ref.name, exc)
                out.append((ref.name, locked(ref.name, ref.path), None))
    profiles += _known_projects(paths)
    for profile in profiles:
        lock = locked(profile.name, profile.path)
        try:
            resolution = resolve(profile, load, lock)
        except EnvboxError as exc:
            note(profile.name, exc)
            resolution = None
        out.append((profile.name, lock, resolution))
    return out


def referenced_layers(paths: Paths, store: Store, problems: list | None = None) -> dict[str, list[str]]:
    """digest -> the profiles (and trusted project files that launched before) using it now or
    in their lock files. problems: see profiles_in_use."""
    refs: dict[str, list[str]] = {}
    for name, lock, resolution in profiles_in_use(paths, problems):
        digests = {s.digest for s in find_layers(resolution, store).values()} if resolution else set()
        if lock:
            digests |= {t.digest for t in lock.tools.values()}
        for digest in digests:
            if name not in refs.get(digest, ()):
                refs.setdefault(digest, []).append(name)
    from envbox.app.exports import live_exports

    for record in live_exports(paths):  # systemd units exported from a profile (export --systemd)
        for digest in record.get("layers", []):
            refs.setdefault(digest, []).append(f"unit:{os.path.basename(record['unit'])}")
    return refs


def cache_needs(paths: Paths, layers: list) -> tuple[set[str], set[str]]:
    """(sha256 of every download one of `layers` (the stored layers that stay) or a lock file
    names, Debian suites that still have a layer to build for a profile in use): what
    `envbox gc` keeps in the download cache."""
    store = Store(paths.store)
    keep = {a.get("sha256") for info in layers for a in info.artifacts if isinstance(a, dict)}
    pending = set()
    for _, lock, resolution in profiles_in_use(paths):
        if lock:
            keep |= {sha for t in lock.tools.values() for _, sha in t.artifacts}
        if resolution is None:
            continue
        built = find_layers(resolution, store)
        for item in resolution.tools:
            if item.release is not None and item.spec.tool not in built and item.release.source.get("kind") == "deb":
                pending.add(item.release.source.get("suite"))
    return {k for k in keep if isinstance(k, str)}, pending
