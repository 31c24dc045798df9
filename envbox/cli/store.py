"""Store commands: catalog, build, layers, gc, verify, lock, which."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer

from envbox.cli.common import app, complete_profiles, envbox_paths, load_target, progress
from envbox.fsio import listdir_sorted
from envbox.core.errors import EXIT_USAGE, EnvboxError


@app.command()
def catalog(
    tool: Optional[str] = typer.Argument(None, help="Only this tool."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """List the releases envbox knows and where each comes from."""
    from envbox.app.prepare import catalog_loader
    from envbox.store.layers import Store

    paths = envbox_paths()
    cat = catalog_loader(paths)()
    store = Store(paths.store)
    tools = [tool] if tool else cat.tools()
    if tool and tool not in cat.tools():
        raise EnvboxError(f"no tool named {tool!r} in the catalog (known: {', '.join(cat.tools())})", "run 'envbox catalog' to list them")
    rows = []
    for name in tools:
        for rel in reversed(cat.of(name)):
            info = store.lookup(rel.select().recipe_key())
            parts = {n: {"default": bool(p.get("default")), "description": p.get("description", "")} for n, p in sorted(rel.part_specs.items())}
            rows.append({"tool": rel.tool, "version": rel.version, "source": rel.source, "links": dict(rel.links),
                         "description": rel.description, "origin": rel.origin, "built": info.digest if info else None,
                         "parts": parts})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from envbox.core.catalog import source_summary

    for row in rows:
        built = "built" if row["built"] else ""
        print(f"{row['tool']:<8} {row['version']:<10} {row['source']['kind']:<8} {source_summary(row['source'])[:64]:<64} {built}".rstrip())
        if tool:  # one tool: also its parts (with: [...] / without: [...] in a profile)
            for name, part in row["parts"].items():
                print(f"{'':<19} part {name:<12} {'(default) ' if part['default'] else ''}{part['description']}")
    return 0


@app.command()
def build(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=complete_profiles),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
) -> int:
    """Fetch and build a profile's layers ahead of time."""
    from envbox.app.prepare import prepare

    paths = envbox_paths()
    prepared = prepare(paths, load_target(paths, name), build=True, frozen=frozen, progress=progress)
    for layer in prepared.plan.layers:
        print(f"{layer.tool:<10} {layer.label}  {layer.root}")
    return 0


@app.command()
def layers(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List the layers in the store: release, size, digest, profiles using them."""
    from envbox.app.prepare import referenced_layers
    from envbox.store.layers import Store

    paths = envbox_paths()
    store = Store(paths.store)
    refs = referenced_layers(paths, store)
    rows = [dict(info.to_json(), profiles=sorted(refs.get(info.digest, []))) for info in store.index()]
    rows.sort(key=lambda r: (r["tool"], r["version"]))
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from envbox.cli.render import size_or_dash

    if not rows:
        print("no layers yet (launch or 'envbox build' a profile)")
    for r in rows:
        print(f"{r['digest'][:16]}  {size_or_dash(r['size']):>10}  {r['label']:<48} {', '.join(r['profiles']) or '(unused)'}")
    return 0


@app.command()
def gc() -> int:
    """Remove layers nothing references (never one a running app uses), and stale cgroups."""
    from envbox.store import layers as store_mod
    from envbox.app.prepare import referenced_layers

    paths = envbox_paths()
    store = store_mod.Store(paths.store)
    keep = set(referenced_layers(paths, store))
    removed, busy = store_mod.gc(store, keep)
    for digest in removed:
        print(f"removed {digest[:16]}")
    for digest in busy:
        print(f"kept {digest[:16]} (in use by a running app)")
    from envbox.cgroups import control as cgroups

    for path in cgroups.cleanup_stale(cgroups.probe(), kill=True):
        print(f"removed stale cgroup {path}")
    print(f"gc: {len(removed)} layer(s) removed, {len(keep)} referenced, {len(busy)} in use", file=sys.stderr)
    return 0


@app.command()
def verify() -> int:
    """Check every stored layer against its recorded digest."""
    from envbox.store import layers as store_mod

    store = store_mod.Store(envbox_paths().store)
    problems = store_mod.verify(store)
    for p in problems:
        print(f"{p.what}: {p.message}")
    count = len(listdir_sorted(store.root / "layers"))
    if problems:
        print(f"envbox: {len(problems)} problem(s) in the store at {store.root}", file=sys.stderr)
        print("hint: 'envbox gc' removes unreferenced layers; delete a damaged layer's directory and launch again to rebuild it", file=sys.stderr)
        return 1
    print(f"verify: {count} layer(s) OK", file=sys.stderr)
    return 0


@app.command()
def lock(name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).")) -> int:
    """Write NAME.lock beside the profile: exact releases, artifact hashes, layer digests."""
    from envbox.store.build import ensure_layers
    from envbox.core.lockfile import lock_path, render_lock
    from envbox.app.prepare import catalog_loader
    from envbox.core.resolve import resolve
    from envbox.fsio import write_text_atomic
    from envbox.store.layers import Store

    paths = envbox_paths()
    profile = load_target(paths, name)
    resolution = resolve(profile, catalog_loader(paths))  # anew: a lock records the current best
    infos = ensure_layers(resolution, Store(paths.store), paths, progress=progress)
    entries = {}
    for item in resolution.tools:
        if item.release is None:
            continue
        info = infos[item.spec.tool]
        entries[item.spec.tool] = {"version": item.release.version, "recipe_key": info.recipe_key, "digest": info.digest, "artifacts": list(info.artifacts)}
    target = lock_path(profile.path)
    if not os.access(target.parent, os.W_OK):
        raise EnvboxError(f"cannot write {target}: the directory is not writable", f"copy the profile to {paths.user_profiles} first")
    write_text_atomic(target, render_lock(profile.name, entries))
    print(f"wrote {target}")
    return 0


@app.command()
def which(name: str = typer.Argument(..., help="Profile name."), path: str = typer.Argument(..., help="An absolute path, e.g. /usr/bin/python.")) -> int:
    """Which layer provides PATH in a profile, and from which release."""
    from envbox.app.prepare import prepare
    from envbox.store.layers import Store

    if not path.startswith("/"):
        raise EnvboxError(f"{path!r} is not an absolute path", "e.g. envbox which chrome /usr/bin/python", exit_code=EXIT_USAGE)
    paths = envbox_paths()
    prepared = prepare(paths, load_target(paths, name), build=False)
    store = Store(paths.store)
    rel = os.path.normpath(path).lstrip("/")
    for layer in reversed(prepared.plan.layers):
        if layer.kind == "dir":
            target, _, sub = rel.partition("/")
            if target == "usr" and os.path.lexists(os.path.join(layer.root, sub)):
                print(f"{path}: {layer.label} ({layer.root}/{sub})")
                return 0
            continue
        if not layer.digest:
            print(f"{path}: unknown yet: {layer.label} is not built ('envbox build {name}')")
            return 1
        if rel in store.manifest(layer.digest):
            found = os.path.join(layer.root, rel)
            link = f" -> {os.readlink(found)}" if os.path.islink(found) else ""
            print(f"{path}{link}: {layer.label} (layer {layer.digest[:16]}, {layer.root}/{rel})")
            return 0
    where = "the host" if os.path.lexists(path) else "nothing (it does not exist in the namespace)"
    print(f"{path}: {where}")
    return 0 if os.path.lexists(path) else 1


