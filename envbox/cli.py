"""The typer app: thin commands, lazy imports; one place turns EnvboxError into exit codes."""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

from .errors import EXIT_ENVBOX, EXIT_USAGE, EnvboxError

app = typer.Typer(
    name="envbox",
    help="Run each app with its own tool versions at /usr/bin/..., in its own mount namespace.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
PASS_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and sandbox steps.")) -> None:
    """Run each app with its own tool versions at /usr/bin/..., in its own mount namespace."""
    _state["debug"] = debug


def _complete_profiles(incomplete: str) -> list[str]:
    """Names of the named profiles (never a project file: completion must not act on one)."""
    from .scopes import all_profiles

    try:
        names = sorted({ref.name for ref, _ in all_profiles(_paths())})
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def _paths():
    from .paths import Paths

    return Paths.from_env()


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"envbox: {message}", file=sys.stderr)


def _target(paths, name: str | None):
    """A named profile, or (name None) the trusted project file found from the working directory."""
    from .prepare import load_named, load_project

    if name is not None:
        return load_named(paths, name)
    profile, warnings = load_project(paths, os.environ)
    for warning in warnings:
        print(f"envbox: warning: {warning}", file=sys.stderr)
    return profile


def _launch(name: str | None, argv_extra: list[str], *, command: list[str] | None, frozen: bool, allow_unenforced: bool) -> int:
    from . import fastpath, launch
    from .prepare import plan_inputs, prepare

    paths = _paths()
    profile = _target(paths, name)
    inputs = plan_inputs(paths, profile)
    prepared = prepare(paths, profile, build=True, frozen=frozen, progress=_progress)
    plan = prepared.plan
    entry = fastpath.make_entry(paths, plan.to_cache(), inputs + _layer_inputs(plan), os.environ)
    if not frozen:
        fastpath.write(paths, fastpath.cache_key(profile.name, str(profile.path) if profile.scope == "project" else None), entry)
    if command is None and not plan.argv:
        raise EnvboxError(f"profile {profile.name} has no command", f"add `command: [...]` to {profile.path}, or use 'envbox run --profile {profile.name} -- CMD'")
    entry["allow_unenforced"] = allow_unenforced
    spec = launch.spec_from_cache(entry, os.environ, os.getcwd(), command, argv_extra, debug=_state["debug"])
    sys.stdout.flush()
    return launch.run(spec)


def _layer_inputs(plan) -> list:
    from .fastpath import signature

    return [(layer.root, signature(layer.root)) for layer in plan.layers if layer.root]


@app.command(context_settings=PASS_ARGS)
def launch(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=_complete_profiles),
    args: Optional[List[str]] = typer.Argument(None, help="Arguments appended to the profile's command (after --)."),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Launch a profile's command in its environment."""
    return _launch(name, list(args or []), command=None, frozen=frozen, allow_unenforced=allow_unenforced)


@app.command(context_settings=PASS_ARGS)
def run(
    command: Optional[List[str]] = typer.Argument(None, help="The command to run (after --)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Profile to use (default: the project's envbox.yaml).", autocompletion=_complete_profiles),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Run any command in a profile's environment."""
    if not command:
        raise EnvboxError("no command given", "usage: envbox run [--profile NAME] -- CMD [ARGS...]", exit_code=EXIT_USAGE)
    return _launch(profile, [], command=list(command), frozen=frozen, allow_unenforced=allow_unenforced)


@app.command()
def shell(
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Profile to use (default: the project's envbox.yaml)."),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
) -> int:
    """Your shell ($SHELL) inside a profile's (or the project's) environment."""
    return _launch(profile, [], command=[os.environ.get("SHELL") or "/bin/sh"], frozen=frozen, allow_unenforced=False)


@app.command()
def trust(revoke: bool = typer.Option(False, "--revoke", help="Forget the trust given to this project's file.")) -> int:
    """Show what this project's envbox.yaml asks for, then trust it (or --revoke)."""
    from . import project
    from . import trust as trust_mod
    from .errors import ProfileError
    from .prepare import with_extends
    from .profile import load_project_profile

    paths = _paths()
    try:
        found = project.find(os.environ)
    except project.ProjectError as exc:
        raise ProfileError(exc.message, exc.hint) from None
    if found is None:
        raise ProfileError("no envbox.yaml here or in a parent directory", "create one, or cd into the project")
    if revoke:
        gone = trust_mod.revoke(paths.trust_dir, found)
        print(f"{'revoked trust in' if gone else 'was not trusted:'} {found}")
        return 0
    pf = trust_mod.read_project_file(found, uid=os.getuid())
    profile, warnings = load_project_profile(pf.path, pf.data, pf.sha256, pf.signature)
    for warning in warnings:
        print(f"envbox: warning: {warning}", file=sys.stderr)
    merged = with_extends(paths, profile)
    from .render import render_request

    print(render_request(merged, pf.sha256))
    trust_mod.record(paths.trust_dir, pf)
    print(f"trusted {pf.path} (sha256 {pf.sha256[:16]}…); any edit or move revokes this")
    return 0


@app.command()
def plan(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=_complete_profiles),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """Show what launch would do: layers, mounts, env, limits, sandbox command."""
    from . import launch as launch_mod
    from .prepare import prepare

    paths = _paths()
    prepared = prepare(paths, _target(paths, name), build=False)
    data = prepared.plan.to_json(os.environ, os.getcwd(), launch_mod.launcher_argv())
    data["cgroup"] = _cgroup_choice(prepared.plan.limits)
    data["fields"] = dict(prepared.profile.field_origins)
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    from .render import render_plan

    print(render_plan(data))
    return 0


def _cgroup_choice(limits) -> dict:
    from . import cgroups

    if limits.empty():
        return {"backend": "none", "reason": "no limits in the profile", "problems": []}
    choice = cgroups.choose_backend(cgroups.probe(), limits)
    return {"backend": choice.name, "reason": choice.reason, "problems": list(choice.problems)}


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List the profiles envbox sees: name, scope, file, tools."""
    from .profile import load_profile
    from .scopes import all_profiles

    rows = []
    for ref, shadow in all_profiles(_paths()):
        row = {"name": ref.name, "scope": ref.scope, "file": str(ref.path), "shadowed_by": str(shadow.path) if shadow else None}
        try:
            prof = load_profile(ref.path, ref.scope)
            row.update(description=prof.description, tools={t.tool: t.describe() for t in prof.tools}, error=None)
        except EnvboxError as exc:
            row.update(description="", tools={}, error=exc.message)
        rows.append(row)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from .render import render_list

    print(render_list(rows))
    return 0


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """Check what this machine can do for envbox (namespaces, overlayfs, cgroups, dirs)."""
    from .doctor import run_checks

    results = run_checks(_paths())
    if as_json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.status:<4}  {r.name}: {r.detail}")
            if r.hint and r.status != "PASS":
                print(f"      hint: {r.hint}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


@app.command()
def catalog(
    tool: Optional[str] = typer.Argument(None, help="Only this tool."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """List the releases envbox knows and where each comes from."""
    from .prepare import catalog_loader
    from .store import Store

    paths = _paths()
    cat = catalog_loader(paths)()
    store = Store(paths.store)
    tools = [tool] if tool else cat.tools()
    if tool and tool not in cat.tools():
        raise EnvboxError(f"no tool named {tool!r} in the catalog (known: {', '.join(cat.tools())})", "run 'envbox catalog' to list them")
    rows = []
    for name in tools:
        for rel in reversed(cat.of(name)):
            info = store.lookup(rel.recipe_key())
            rows.append({"tool": rel.tool, "version": rel.version, "source": rel.source, "links": dict(rel.links),
                         "description": rel.description, "origin": rel.origin, "built": info.digest if info else None})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from .catalog import source_summary

    for row in rows:
        built = "built" if row["built"] else ""
        print(f"{row['tool']:<8} {row['version']:<10} {row['source']['kind']:<8} {source_summary(row['source'])[:64]:<64} {built}")
    return 0


@app.command()
def build(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=_complete_profiles),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
) -> int:
    """Fetch and build a profile's layers ahead of time."""
    from .prepare import prepare

    paths = _paths()
    prepared = prepare(paths, _target(paths, name), build=True, frozen=frozen, progress=_progress)
    for layer in prepared.plan.layers:
        print(f"{layer.tool:<10} {layer.label}  {layer.root}")
    return 0


@app.command()
def layers(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List the layers in the store: release, size, digest, profiles using them."""
    from .prepare import referenced_layers
    from .store import Store

    paths = _paths()
    store = Store(paths.store)
    refs = referenced_layers(paths, store)
    rows = [dict(info.to_json(), profiles=sorted(refs.get(info.digest, []))) for info in store.index()]
    rows.sort(key=lambda r: (r["tool"], r["version"]))
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from .render import _size

    if not rows:
        print("no layers yet (launch or 'envbox build' a profile)")
    for r in rows:
        print(f"{r['digest'][:16]}  {_size(r['size']):>10}  {r['label']:<48} {', '.join(r['profiles']) or '(unused)'}")
    return 0


@app.command()
def gc() -> int:
    """Remove layers nothing references (never one a running app uses), and stale cgroups."""
    from . import store as store_mod
    from .prepare import referenced_layers

    paths = _paths()
    store = store_mod.Store(paths.store)
    keep = set(referenced_layers(paths, store))
    removed, busy = store_mod.gc(store, keep)
    for digest in removed:
        print(f"removed {digest[:16]}")
    for digest in busy:
        print(f"kept {digest[:16]} (in use by a running app)")
    from . import cgroups

    for path in cgroups.cleanup_stale(cgroups.probe(), kill=True):
        print(f"removed stale cgroup {path}")
    print(f"gc: {len(removed)} layer(s) removed, {len(keep)} referenced, {len(busy)} in use", file=sys.stderr)
    return 0


@app.command()
def verify() -> int:
    """Check every stored layer against its recorded digest."""
    from . import store as store_mod

    store = store_mod.Store(_paths().store)
    problems = store_mod.verify(store)
    for p in problems:
        print(f"{p.what}: {p.message}")
    count = len(store_mod._listdir(store.root / "layers"))
    if problems:
        print(f"envbox: {len(problems)} problem(s) in the store at {store.root}", file=sys.stderr)
        print("hint: 'envbox gc' removes unreferenced layers; delete a damaged layer's directory and launch again to rebuild it", file=sys.stderr)
        return 1
    print(f"verify: {count} layer(s) OK", file=sys.stderr)
    return 0


@app.command()
def lock(name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).")) -> int:
    """Write NAME.lock beside the profile: exact releases, artifact hashes, layer digests."""
    from .build import ensure_layers
    from .lockfile import lock_path, render_lock
    from .prepare import catalog_loader
    from .resolve import resolve
    from .store import Store, _atomic_write

    paths = _paths()
    profile = _target(paths, name)
    resolution = resolve(profile, catalog_loader(paths))  # anew: a lock records the current best
    infos = ensure_layers(resolution, Store(paths.store), paths, progress=_progress)
    entries = {}
    for item in resolution.tools:
        if item.release is None:
            continue
        info = infos[item.spec.tool]
        entries[item.spec.tool] = {"version": item.release.version, "recipe_key": info.recipe_key, "digest": info.digest, "artifacts": list(info.artifacts)}
    target = lock_path(profile.path)
    if not os.access(target.parent, os.W_OK):
        raise EnvboxError(f"cannot write {target}: the directory is not writable", f"copy the profile to {paths.user_profiles} first")
    _atomic_write(target, render_lock(profile.name, entries))
    print(f"wrote {target}")
    return 0


@app.command()
def which(name: str = typer.Argument(..., help="Profile name."), path: str = typer.Argument(..., help="An absolute path, e.g. /usr/bin/python.")) -> int:
    """Which layer provides PATH in a profile, and from which release."""
    from .prepare import prepare
    from .store import Store

    if not path.startswith("/"):
        raise EnvboxError(f"{path!r} is not an absolute path", "e.g. envbox which chrome /usr/bin/python", exit_code=EXIT_USAGE)
    paths = _paths()
    prepared = prepare(paths, _target(paths, name), build=False)
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
            print(f"{path}: {layer.label} (layer {layer.digest[:16]}, {layer.root}/{rel})")
            return 0
    where = "the host" if os.path.lexists(path) else "nothing (it does not exist in the namespace)"
    print(f"{path}: {where}")
    return 0 if os.path.lexists(path) else 1


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """Running launches: profile, pid, backend, cgroup, memory and CPU used."""
    from . import cgroups
    from .running import running_launches

    rows = running_launches(_paths().runtime_dir, cgroups.list_running(cgroups.probe()))
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from .render import render_ps

    print(render_ps(rows))
    return 0


from .cli_desktop import desktop_app  # noqa: E402  (a sub-app; its commands import lazily)

app.add_typer(desktop_app, name="desktop")


def _usage_errors() -> tuple[type, ...]:
    """typer >= 0.20 vendors click (typer.exceptions); older typer uses click itself."""
    found: list[type] = []
    try:
        from typer.exceptions import TyperException

        found.append(TyperException)
    except ImportError:
        pass
    try:
        import click

        found.append(click.ClickException)
    except ImportError:
        pass
    return tuple(found)


def run_cli(argv: list[str]) -> int:
    """Run the typer app; the only place that turns errors into messages and exit codes."""
    try:
        result = app(args=argv, prog_name="envbox", standalone_mode=False)
    except EnvboxError as exc:
        if _state["debug"]:
            raise
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except _usage_errors() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `envbox` or `envbox desktop`
            print(exc.format_message(), file=sys.stderr)
            return EXIT_USAGE
        print(f"envbox: {exc.format_message()}", file=sys.stderr)
        print("hint: run 'envbox --help' for usage", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if _state["debug"]:
            raise
        print(f"envbox: {exc}", file=sys.stderr)
        return EXIT_ENVBOX
    except Exception as exc:  # a bug: still one line, with the way to the traceback
        if _state["debug"]:
            raise
        print(f"envbox: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: run again with 'envbox --debug ...' for the traceback, and report it", file=sys.stderr)
        return EXIT_ENVBOX
    return result if isinstance(result, int) else 0
