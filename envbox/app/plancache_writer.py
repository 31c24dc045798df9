"""Write the fast launch path's cache entry after a full prepare: the plan and every input it
was made from, with stat signatures. The slow side; the reader is envbox.runtime.plancache."""

from __future__ import annotations

import marshal
import os

from envbox.app.protect import protected_dirs
from envbox.core.digests import signature
from envbox.runtime.plancache import CACHE_VERSION, entry_path, key_env


def code_files() -> list[str]:
    """Every module of the envbox package, subpackages included: an edit anywhere in envbox
    invalidates the cached plans (a plan is only as current as the code that made it)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = []
    for top, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.extend(os.path.join(top, n) for n in files if n.endswith(".py"))
    return sorted(found)


def make_entry(paths, plan_data: dict, inputs: list, environ) -> dict:
    """A cache entry for a plan (Plan.to_cache()) made from the recorded inputs."""
    return {
        "version": CACHE_VERSION,
        "uid": os.getuid(),
        "env": key_env(environ),
        "inputs": [[p, s] for p, s in inputs] + [[p, signature(p)] for p in code_files()],
        "plan": plan_data,
        "store_root": str(paths.store),
        "runtime_dir": str(paths.runtime_dir),
        "readonly": protected_dirs(paths),
    }


def write(paths, name: str, entry: dict) -> None:
    """Record an entry (the full CLI, after a successful prepare); best effort."""
    from envbox.fsio import write_atomic

    target = entry_path(str(paths.cache_dir), name)
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        write_atomic(target, marshal.dumps(entry), mode=0o600, fsync=False)
    except OSError:
        pass  # a cache is an optimisation; the slow path works without it
