"""Resolution -> layers in the store: look them up, or build the missing ones. Side effects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from envbox.core.errors import BuildError
from envbox.core.lockfile import Lock
from envbox.config.paths import Paths
from envbox.core.plan import OVERLAY_TARGETS, Stored
from envbox.core.resolve import Resolution, Resolved
from envbox.store.layers import LayerInfo, Recipe, Store

# Helpers (apt-get, dpkg-deb, patchelf, a layer's python) get this environment, never the
# caller's: a profile's or user's LD_PRELOAD, PYTHONPATH or PATH must not reach them.
HELPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def recipe_for(item: Resolved, paths: Paths, pins: dict[str, str], progress: Callable[[str], None]) -> Recipe:
    key = item.recipe_key()
    assert key is not None
    if item.release is None:
        return Recipe(key, item.label(), item.spec.tool, "host", item.links, lambda root, work: ())
    release = item.release

    def fill(root: Path, work: Path) -> tuple:
        from envbox import sources
        from envbox.sources import BuildContext

        module = sources.kinds()[release.kind]
        ctx = BuildContext(root=root, work=work, downloads=paths.downloads, pins=pins, progress=progress, helper_env=dict(HELPER_ENV))
        artifacts = tuple(module.build(release.source, ctx))
        for extra in release.sources[1:]:  # a part's further sources (e.g. pip's wheels), same layer
            artifacts += tuple(sources.kinds()[extra["kind"]].build(extra, ctx))
        if release.post_steps:
            from envbox.store import postbuild

            postbuild.run_steps(release.post_steps, root, ctx, links=dict(release.links))
        return artifacts

    return Recipe(key, release.label(), release.tool, release.version, release.links, fill)


def to_stored(info: LayerInfo) -> Stored:
    targets = tuple(t for t in OVERLAY_TARGETS if (info.path / t).is_dir())
    return Stored(info.digest, str(info.path), targets)


def find_layers(resolution: Resolution, store: Store) -> dict[str, Stored]:
    """The layers already in the store (no building, no network)."""
    out = {}
    for item in resolution.tools:
        key = item.recipe_key()
        info = store.lookup(key) if key else None
        if info:
            out[item.spec.tool] = to_stored(info)
    return out


def ensure_layers(
    resolution: Resolution,
    store: Store,
    paths: Paths,
    *,
    lock: Lock | None = None,
    progress: Callable[[str], None] = lambda m: None,
) -> dict[str, LayerInfo]:
    """Every layer the resolution needs, built where missing. Checks locked digests."""
    out = {}
    for item in resolution.tools:
        if item.prefix:
            _check_prefix(item)
            continue
        if item.links:
            _check_host_target(item)
        pins = lock.pins(item.spec.tool) if lock else {}
        info = store.ensure(recipe_for(item, paths, pins, progress), progress=progress)
        locked = lock.tools.get(item.spec.tool) if lock else None
        if locked and locked.recipe_key == info.recipe_key and locked.digest != info.digest:
            raise BuildError(
                f"layer for {item.label()} has digest {info.digest[:16]}…, but {lock.path.name} records {locked.digest[:16]}…",
                "the source delivered other bytes than when the lock was written; check the source, then 'envbox lock' again",
            )
        out[item.spec.tool] = info
    return out


def _check_prefix(item: Resolved) -> None:
    prefix = Path(item.prefix or "")
    if not prefix.is_dir():
        raise BuildError(f"{item.spec.tool}: directory {prefix} does not exist", f"install the tool there, or fix tools.{item.spec.tool}.dir")
    usr = Path("/usr")
    resolved = prefix.resolve()
    if resolved == usr or resolved.is_relative_to(usr) or usr.is_relative_to(resolved):
        raise BuildError(
            f"{item.spec.tool}: {prefix} overlaps /usr, which overlayfs cannot stack over itself",
            "copy the prefix elsewhere (e.g. under /opt) or use a catalog release",
        )


def _check_host_target(item: Resolved) -> None:
    target = item.spec.host or ""
    if not os.access(target, os.X_OK) or os.path.isdir(target):
        raise BuildError(f"{item.spec.tool}: host program {target} does not exist or is not executable", f"install it, or change tools.{item.spec.tool}")
