"""The typer app: thin commands, lazy imports; one place turns EnvboxError into exit codes."""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import List, Optional

import typer

from envbox.cli.common import echo, PASS_ARGS, app, complete_profiles, envbox_paths, load_target, progress, state
from envbox.core.errors import EXIT_ENVBOX, EXIT_USAGE, EnvboxError
from envbox.core.names import printable


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and sandbox steps.")) -> None:
    """Run each app with its own tool versions at /usr/bin/..., in its own mount namespace."""
    state["debug"] = debug


def _launch(name: str | None, argv_extra: list[str], *, command: list[str] | None, frozen: bool, allow_unenforced: bool) -> int:
    from envbox.app import plancache_writer
    from envbox.app.prepare import plan_inputs, prepare
    from envbox.runtime import supervisor as launch
    from envbox.runtime.plancache import cache_key

    paths = envbox_paths()
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        raise EnvboxError("the current directory no longer exists", "cd to an existing directory") from None
    profile = load_target(paths, name)
    inputs = plan_inputs(paths, profile)
    prepared = prepare(paths, profile, build=True, frozen=frozen, progress=progress)
    plan = prepared.plan
    if profile.scope == "project":
        from envbox.app.prepare import remember_project

        remember_project(paths, profile)
    entry = plancache_writer.make_entry(paths, plan.to_cache(), inputs + _layer_inputs(plan), os.environ)
    if not frozen and not _trust_record_vanished(paths, profile, inputs):
        plancache_writer.write(paths, cache_key(profile.name, str(profile.path) if profile.scope == "project" else None), entry)
    if command is None and not plan.argv:
        raise EnvboxError(f"profile {profile.name} has no command", f"add `command: [...]` to {profile.path}, or use 'envbox run --profile {profile.name} -- CMD'")
    entry["allow_unenforced"] = allow_unenforced
    spec = launch.spec_from_cache(entry, os.environ, cwd, command, argv_extra, debug=state["debug"], closed_fds=state.get("closed_fds", ()))
    sys.stdout.flush()
    return launch.run(spec)


def _trust_record_vanished(paths, profile, inputs) -> bool:
    """A trust record revoked while this launch read it must not be cached as "absent"."""
    if profile.scope != "project":
        return False
    from envbox.config.trust import record_path

    record = str(record_path(paths.trust_dir, profile.path))
    return any(path == record and sig is None for path, sig in inputs)


def _layer_inputs(plan) -> list:
    from envbox.core.digests import signature

    return [(layer.root, signature(layer.root)) for layer in plan.layers if layer.root]


@app.command(context_settings=PASS_ARGS)
def launch(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_profiles),
    args: Optional[List[str]] = typer.Argument(None, help="Arguments appended to the profile's command (after --)."),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Launch a profile's command in its environment."""
    return _launch(name, list(args or []), command=None, frozen=frozen, allow_unenforced=allow_unenforced)


@app.command(context_settings=PASS_ARGS)
def run(
    command: Optional[List[str]] = typer.Argument(None, help="The command to run (after --)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Profile to use (default: the project's envbox.yaml).", autocompletion=complete_profiles),
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
    from envbox.config import project
    from envbox.config import trust as trust_mod
    from envbox.core.errors import ProfileError
    from envbox.app.prepare import with_extends
    from envbox.core.profile import load_project_profile

    paths = envbox_paths()
    try:
        found = project.find(os.environ)
    except project.ProjectError as exc:
        raise ProfileError(exc.message, exc.hint) from None
    if found is None:
        raise ProfileError("no envbox.yaml here or in a parent directory", "create one, or cd into the project")
    if revoke:
        gone = trust_mod.revoke(paths.trust_dir, found)
        echo(f"{'revoked trust in' if gone else 'was not trusted:'} {found}")
        return 0
    pf = trust_mod.read_project_file(found, uid=os.getuid())
    profile, warnings = load_project_profile(pf.path, pf.data, pf.sha256, pf.signature)
    for warning in warnings:
        echo(f"envbox: warning: {warning}", err=True)
    merged = with_extends(paths, profile)
    from envbox.cli.render import render_request

    echo(render_request(merged, pf.sha256))
    trust_mod.record(paths.trust_dir, pf)
    echo(f"trusted {pf.path} (sha256 {pf.sha256[:16]}…); any edit or move revokes this")
    return 0


@app.command()
def plan(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=complete_profiles),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """Show what launch would do: layers, mounts, env, limits, sandbox command."""
    from envbox.runtime import supervisor as launch_mod
    from envbox.app.prepare import prepare

    paths = envbox_paths()
    prepared = prepare(paths, load_target(paths, name), build=False)
    from envbox.app.protect import protected_dirs

    readonly = tuple(protected_dirs(paths, create=False))
    data = prepared.plan.to_json(os.environ, os.getcwd(), launch_mod.launcher_argv(), readonly=readonly)
    data["cgroup"] = _cgroup_choice(prepared.plan.limits)
    data["fields"] = dict(prepared.profile.field_origins)
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    from envbox.cli.render import render_plan

    echo(render_plan(data))
    return 0


def _cgroup_choice(limits) -> dict:
    from envbox.cgroups import control as cgroups

    if limits.empty():
        return {"backend": "none", "reason": "no limits in the profile", "problems": []}
    choice = cgroups.choose_backend(cgroups.probe(), limits)
    return {"backend": choice.name, "reason": choice.reason, "problems": list(choice.problems)}


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List the profiles envbox sees: name, scope, file, tools."""
    from envbox.core.profile import load_profile
    from envbox.config.scopes import all_profiles

    rows = []
    for ref, shadow in all_profiles(envbox_paths()):
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
    from envbox.cli.render import render_list

    echo(render_list(rows))
    return 0


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """Check what this machine can do for envbox (namespaces, overlayfs, cgroups, dirs)."""
    from envbox.app.doctor import run_checks

    results = run_checks(envbox_paths())
    if as_json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            echo(f"{r.status:<4}  {r.name}: {r.detail}")
            if r.hint and r.status != "PASS":
                echo(f"      hint: {r.hint}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """Running launches: profile, pid, backend, cgroup, memory and CPU used."""
    from envbox.cgroups import control as cgroups
    from envbox.runtime.running import running_launches

    from envbox.runtime.running import UntrustedRuntimeDir

    runtime_dir = envbox_paths().runtime_dir
    try:
        rows = running_launches(runtime_dir, cgroups.list_running(cgroups.probe()))
    except UntrustedRuntimeDir as exc:
        raise EnvboxError(
            f"not reading launch records: {printable(str(exc))}",
            "another user may have made it to show forged records; remove it, or set XDG_RUNTIME_DIR (launches are not recorded there until then)",
        ) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    from envbox.cli.render import render_ps

    echo(render_ps(rows))
    return 0


from envbox.cli import store as cli_store  # noqa: E402,F401  (registers the store commands on app)
from envbox.cli.desktop import desktop_app  # noqa: E402  (a sub-app; its commands import lazily)

app.add_typer(desktop_app, name="desktop")


def _usage_errors() -> tuple[type, ...]:
    """What typer raises for bad usage: click's exceptions (typer < 0.20, as pinned, is built
    on click)."""
    import click

    return (click.ClickException,)


def run_cli(argv: list[str], *, closed_fds: tuple = ()) -> int:
    """Run the typer app; the only place that turns errors into messages and exit codes.
    closed_fds: standard fds envbox was started without (main.reopen_closed_streams)."""
    state["closed_fds"] = tuple(closed_fds)
    try:
        result = app(args=argv, prog_name="envbox", standalone_mode=False)
    except EnvboxError as exc:
        if state["debug"]:
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
        print(f"envbox: {printable(exc.format_message())}", file=sys.stderr)
        print("hint: run 'envbox --help' for usage", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if state["debug"]:
            raise
        # envbox's own file operations: the file and the cause, without Python's [Errno N].
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"envbox: {printable(where)}{exc.strerror or exc}", file=sys.stderr)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print("hint: free some space on that file system (or move envbox's cache: ENVBOX_CACHE_DIR), then try again", file=sys.stderr)
        return EXIT_ENVBOX
    except Exception as exc:  # a bug: still one line, with the way to the traceback
        if state["debug"]:
            raise
        print(f"envbox: internal error: {type(exc).__name__}: {printable(str(exc))}", file=sys.stderr)
        print("hint: run again with 'envbox --debug ...' for the traceback, and report it", file=sys.stderr)
        return EXIT_ENVBOX
    return result if isinstance(result, int) else 0
