"""Store commands: catalog, build, layers, gc, verify, lock, which."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from envbox.cli.common import FROZEN_HELP, app, complete_profiles, complete_tools, echo, envbox_paths, load_target, progress
from envbox.fsio import listdir_sorted
from envbox.cli.table import emit
from envbox.core.errors import EXIT_USAGE, EnvboxError


@app.command()
def catalog(
    tool: Optional[str] = typer.Argument(None, help="Only this tool.", autocompletion=complete_tools),
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
        from envbox.core.catalog import unknown_tool

        raise unknown_tool(tool, cat.tools())
    rows = []
    for name in tools:
        for rel in reversed(cat.of(name)):
            info = store.lookup(rel.select().recipe_key())
            parts = {n: {"default": bool(p.get("default")), "description": p.get("description", "")} for n, p in sorted(rel.part_specs.items())}
            rows.append({"tool": rel.tool, "version": rel.version, "source": rel.source, "links": dict(rel.links),
                         "description": rel.description, "origin": rel.origin, "built": info.digest if info else None,
                         "parts": parts})
    from envbox.cli.render import render_catalog

    # One tool: also its parts (with: [...] / without: [...] in a profile).
    emit(rows, as_json=as_json, render=lambda shown: render_catalog(shown, parts=bool(tool)))
    return 0


@app.command()
def build(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=complete_profiles),
    frozen: bool = typer.Option(False, "--frozen", help=FROZEN_HELP),
) -> int:
    """Fetch and build a profile's layers ahead of time."""
    from envbox.app.prepare import prepare

    paths = envbox_paths()
    with progress() as shown:
        prepared = prepare(paths, load_target(paths, name), build=True, frozen=frozen, progress=shown)
    for layer in prepared.plan.layers:
        echo(f"{layer.tool:<10} {layer.label}  {layer.root}")
    return 0


@app.command()
def layers(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List stored layers: release, size, profiles using them."""
    from envbox.app.prepare import referenced_layers
    from envbox.store.layers import Store

    paths = envbox_paths()
    store = Store(paths.store)
    refs = referenced_layers(paths, store)
    rows = [dict(info.to_json(), profiles=sorted(refs.get(info.digest, []))) for info in store.index()]
    rows.sort(key=lambda r: (r["tool"], r["version"]))
    from envbox.cli.render import render_layers

    emit(rows, as_json=as_json, render=render_layers)
    return 0


@app.command()
def gc(dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed, with sizes; remove nothing.")) -> int:
    """Remove unused layers, stale cgroups and cached downloads."""
    from envbox.app.prepare import cache_needs, referenced_layers
    from envbox.cli.render import render_removals
    from envbox.store import cacheprune
    from envbox.store import layers as store_mod

    paths = envbox_paths()
    store = store_mod.Store(paths.store)
    infos = {info.digest: info for info in store.index()}

    def referenced() -> set:
        # Asked under gc's lock, after the store was listed (store_mod.gc).
        problems: list = []
        refs = referenced_layers(paths, store, problems)
        if problems:
            name, message = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise EnvboxError(
                f"gc removed nothing: cannot tell which layers profile {name} uses: {message}{more}",
                "fix or remove that profile ('envbox list' shows the broken ones), then run 'envbox gc' again",
            )
        return set(refs)

    rows = []
    if dry_run:
        keep = referenced()
        unused = [d for d in listdir_sorted(store.root / "layers") if store_mod.is_digest(d) and d not in keep]
        busy: list[str] = []
    else:
        unused, busy, keep = store_mod.gc(store, referenced)
    for digest in unused:
        info = infos.get(digest)
        size = info.size if info else cacheprune.size_of(store.layer_dir(digest))
        rows.append((f"layer {digest[:16]}", size, (info.label if info else "not indexed") + ": no profile uses it"))
    for digest in busy:
        print(f"kept {digest[:16]} (in use by a running app)")
    # The download cache, once the layers that go are known (their downloads go with them).
    kept_layers = [info for digest, info in infos.items() if digest not in unused]
    needed, pending = cache_needs(paths, kept_layers)
    items = cacheprune.plan(paths.downloads, keep_sha256=needed, pending_suites=pending)
    if not dry_run:
        items = cacheprune.apply(items, paths.downloads)
    rows += [(str(item.path.relative_to(paths.downloads)), item.size, item.what) for item in items]
    if rows:
        print(render_removals(rows))
    if not dry_run:
        from envbox.app.exports import live_exports, prune_extensions
        from envbox.cgroups import control as cgroups

        for path in prune_extensions(paths, live_exports(paths)):
            echo(f"removed extension tree {path} (no exported unit uses it)")

        for path in cgroups.cleanup_stale(cgroups.probe(), kill=True):
            echo(f"removed stale cgroup {path}")
    from envbox.core.limits import format_size

    total = format_size(sum(size for _, size, _ in rows))
    layers_gone = sum(1 for what, _, _ in rows if what.startswith("layer "))
    counts = f"{layers_gone} layer(s), {len(rows) - layers_gone} cached download file(s)"
    if dry_run:
        print(f"gc: would free {total}: {counts}; {len(keep)} layer(s) referenced (--dry-run: nothing removed)", file=sys.stderr)
    else:
        print(f"gc: freed {total}: {counts}; {len(keep)} layer(s) referenced, {len(busy)} in use", file=sys.stderr)
    return 0


def _check(store) -> tuple[list, set[str]]:
    """verify, and mark what failed (and unmark what is whole again): (problems, damaged)."""
    from envbox.store import damage
    from envbox.store import layers as store_mod

    problems = store_mod.verify(store)
    damaged = {p.what for p in problems if store_mod.is_digest(p.what)}
    for digest in damaged:
        damage.mark(store.root, digest)
    for digest in set(damage.marked(store.root)) - damaged:
        if (store.root / "layers" / digest).is_dir() or not os.path.lexists(store.root / "layers" / digest):
            damage.clear(store.root, digest)  # checked whole now, or gone
    return problems, damaged


@app.command()
def verify() -> int:
    """Check every stored layer against its recorded digest."""
    from envbox.store import layers as store_mod

    store = store_mod.Store(envbox_paths().store)
    problems, damaged = _check(store)
    for p in problems:
        echo(f"{p.what}: {p.message}")
    count = len(listdir_sorted(store.root / "layers"))
    if problems:
        print(f"envbox: {len(problems)} problem(s) in the store at {store.root}", file=sys.stderr)
        if damaged:
            print(f"envbox: {len(damaged)} damaged layer(s) will not be used until repaired", file=sys.stderr)
        print("hint: run 'envbox repair' to remove what is damaged and build it again", file=sys.stderr)
        return 1
    print(f"verify: {count} layer(s) OK", file=sys.stderr)
    return 0


@app.command()
def repair() -> int:
    """Remove damaged layers and build again what profiles need."""
    from envbox.app.prepare import load_named, prepare, referenced_layers
    from envbox.store import damage
    from envbox.store import layers as store_mod

    paths = envbox_paths()
    store = store_mod.Store(paths.store)
    problems, damaged = _check(store)
    damaged |= {d for d in damage.marked(store.root) if os.path.lexists(store.root / "layers" / d)}
    if not problems and not damaged:
        print("repair: nothing to repair", file=sys.stderr)
        return 0
    users = referenced_layers(paths, store)
    # gc's removal, for exactly the damaged layers: index entries first, then the layer as a
    # whole (renamed away, then deleted); a layer a running app holds is left for later. What
    # to keep is listed under gc's lock, so a layer built meanwhile is kept too.
    removed, busy, _ = store_mod.gc(store, lambda: set(listdir_sorted(store.root / "layers")) - damaged)
    for digest in removed:
        damage.clear(store.root, digest)
        print(f"removed {digest[:16]} (damaged)")
    for digest in busy:
        print(f"kept {digest[:16]} (damaged, but in use by a running app: run 'envbox repair' again after it exits)")
    failed = 0
    for name in sorted({n for d in removed for n in users.get(d, [])}):
        try:
            with progress() as shown:
                prepare(paths, load_named(paths, name), build=True, progress=shown)
        except EnvboxError as exc:
            failed += 1
            print(f"envbox: could not rebuild {name}: {exc.message}", file=sys.stderr)
            continue
        print(f"rebuilt {name}")
    print(f"repair: {len(removed)} layer(s) removed, {len(busy)} in use, {failed} rebuild(s) failed", file=sys.stderr)
    return 1 if busy or failed else 0


@app.command()
def lock(name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=complete_profiles)) -> int:
    """Write NAME.lock: exact releases, hashes, layer digests."""
    from envbox.store.build import ensure_layers
    from envbox.core.lockfile import lock_path, render_lock
    from envbox.app.prepare import catalog_loader
    from envbox.core.resolve import resolve
    from envbox.fsio import write_text_atomic
    from envbox.store.layers import Store

    paths = envbox_paths()
    profile = load_target(paths, name)
    if profile.scope == "bundled":  # never write into envbox's own installation
        raise EnvboxError(f"{profile.name} is a bundled profile: its lock would go into envbox's installation",
                          f"copy it first: cp {profile.path} {paths.user_profiles}/, then 'envbox lock {profile.name}'")
    resolution = resolve(profile, catalog_loader(paths))  # anew: a lock records the current best
    with progress() as shown:
        infos = ensure_layers(resolution, Store(paths.store), paths, progress=shown)
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
    echo(f"wrote {target}")
    return 0


@app.command()
def which(name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_profiles), path: str = typer.Argument(..., help="An absolute path, e.g. /usr/bin/python.")) -> int:
    """Show which layer provides PATH in a profile."""
    from envbox.app.prepare import prepare
    from envbox.store.layers import Store

    if not path.startswith("/"):
        raise EnvboxError(f"{path!r} is not an absolute path", "e.g. envbox which chrome /usr/bin/python", exit_code=EXIT_USAGE)
    paths = envbox_paths()
    prepared = prepare(paths, load_target(paths, name), build=False)
    layers, store = prepared.plan.layers, Store(paths.store)
    found = _in_layers(layers, store, path)
    if found is None:
        echo(f"{path}: unknown yet: {_unbuilt(layers).label} is not built ('envbox build {name}')")
        return 1
    if found:
        echo(f"{path}{found}")
        return 0
    if not os.path.lexists(path):
        echo(f"{path}: nothing (it does not exist in the namespace)")
        return 1
    echo(f"{path}: the host{_run_by(layers, store, path)}")
    return 0


def _unbuilt(layers):
    """The layer _in_layers stopped at: the topmost one not built yet (as before the split)."""
    return next(layer for layer in reversed(layers) if layer.kind != "dir" and not layer.digest)


def _in_layers(layers, store, path: str) -> str | None:
    """': LABEL (where)' for the top layer that provides path, '' for none, None when a layer
    it would have to look in is not built yet."""
    rel = os.path.normpath(path).lstrip("/")
    for layer in reversed(layers):
        if layer.kind == "dir":
            target, _, sub = rel.partition("/")
            if target == "usr" and os.path.lexists(os.path.join(layer.root, sub)):
                return f": {layer.label} ({layer.root}/{sub})"
            continue
        if not layer.digest:
            return None
        if rel in store.manifest(layer.digest):
            found = os.path.join(layer.root, rel)
            link = f" -> {os.readlink(found)}" if os.path.islink(found) else ""
            return f"{link}: {layer.label} (layer {layer.digest[:16]}, {layer.root}/{rel})"
    return ""


def _run_by(layers, store, path: str) -> str:
    """For a host script whose interpreter a layer replaces (the host's /usr/bin/pip3 under a
    pinned python3): '; run by INTERPRETER -> LABEL'. Empty when the host's own runs it."""
    from envbox.core.shebang import interpreter_candidates
    from envbox.fsio import FileRefused, open_regular

    try:
        fd, _ = open_regular(path, follow=True)
    except (FileRefused, OSError):
        return ""
    try:
        head = os.read(fd, 256)
    except OSError:
        return ""
    finally:
        os.close(fd)
    for candidate in interpreter_candidates(head):
        # /bin and /sbin are links to /usr/bin and /usr/sbin on a merged-/usr host
        real = os.path.join(os.path.realpath(os.path.dirname(candidate)), os.path.basename(candidate))
        found = _in_layers(layers, store, real)
        if found:
            return f"; run by {candidate}{found}"
        if found is None or os.path.lexists(real):
            return ""
    return ""


