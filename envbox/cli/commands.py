"""The typer app: thin commands, lazy imports; one place turns EnvboxError into exit codes."""

from __future__ import annotations

import errno
import os
import sys
from typing import List, Optional

import typer

from envbox.cli.common import FROZEN_HELP, app, build_command, complete_profiles, echo, envbox_paths, load_target, progress, state
from envbox.cli.table import emit
from envbox.core.errors import EXIT_ENVBOX, EXIT_USAGE, EnvboxError
from envbox.core.names import printable


def _print_version(value: bool) -> None:
    if value:
        from envbox import __version__

        print(f"envbox {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and sandbox steps."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show notes about builds that need no action."),
    version: bool = typer.Option(False, "--version", "-V", help="Print envbox's version and exit.", callback=_print_version, is_eager=True),
) -> None:
    """Run each app with its own tool versions at /usr/bin/..., in its own mount namespace."""
    state["debug"] = debug
    state["verbose"] = verbose


def _launch(name: str | None, argv_extra: list[str], *, command: list[str] | None, frozen: bool, allow_unenforced: bool, force: bool = False) -> int:
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
    if profile.scope == "project":
        from envbox.app.prepare import remember_project

        remember_project(paths, profile)  # first: `envbox gc` then keeps what the build makes
    with progress() as shown:  # gone before the app gets the terminal
        prepared = prepare(paths, profile, build=True, frozen=frozen, progress=shown)
    plan = prepared.plan
    entry = plancache_writer.make_entry(paths, plan.to_cache(), inputs + _layer_inputs(paths, plan), os.environ)
    if not frozen and not _trust_record_vanished(paths, profile, inputs):
        plancache_writer.write(paths, cache_key(profile.name, str(profile.path) if profile.scope == "project" else None), entry)
    if command is None and not plan.argv:
        raise EnvboxError(f"profile {profile.name} has no command", f"add `command: [...]` to {profile.path}, or use 'envbox run --profile {profile.name} -- CMD'")
    entry["allow_unenforced"] = allow_unenforced
    entry["force"] = force
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


def _layer_inputs(paths, plan) -> list:
    """Each layer directory, and the mark `envbox verify` would put on it (absent now): a layer
    marked damaged invalidates the cached plan, so the fast path never launches it either."""
    from envbox.core.digests import signature
    from envbox.store.damage import marker

    out = [(layer.root, signature(layer.root)) for layer in plan.layers if layer.root]
    return out + [(str(marker(paths.store, layer.digest)), None) for layer in plan.layers if layer.root and layer.digest]


@app.command()
def launch(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml and its command).", autocompletion=complete_profiles),
    args: Optional[List[str]] = typer.Argument(None, help="Arguments appended to the profile's command (after --)."),
    frozen: bool = typer.Option(False, "--frozen", help=FROZEN_HELP),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
    force: bool = typer.Option(False, "--force", help="Launch even when the app already runs outside envbox (warns)."),
) -> int:
    """Launch a profile's command in its environment."""
    return _launch(name, list(args or []), command=None, frozen=frozen, allow_unenforced=allow_unenforced, force=force)


@app.command()
def run(
    command: Optional[List[str]] = typer.Argument(None, help="The command to run (after --)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Profile to use (default: the project's envbox.yaml).", autocompletion=complete_profiles),
    frozen: bool = typer.Option(False, "--frozen", help=FROZEN_HELP),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Run any command in a profile's environment."""
    if not command:
        raise EnvboxError("no command given", "usage: envbox run [--profile NAME] -- CMD [ARGS...]", exit_code=EXIT_USAGE)
    return _launch(profile, [], command=list(command), frozen=frozen, allow_unenforced=allow_unenforced)


@app.command()
def shell(
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Profile to use (default: the project's envbox.yaml).", autocompletion=complete_profiles),
    frozen: bool = typer.Option(False, "--frozen", help=FROZEN_HELP),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Your $SHELL in a profile's or the project's environment."""
    return _launch(profile, [], command=[os.environ.get("SHELL") or "/bin/sh"], frozen=frozen, allow_unenforced=allow_unenforced)


@app.command()
def trust(
    revoke: bool = typer.Option(False, "--revoke", help="Forget the trust given to this project's file."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (on a terminal trust asks before recording)."),
) -> int:
    """Show what this project's envbox.yaml asks for; trust it."""
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
    if not yes and sys.stdin is not None and sys.stdin.isatty() and not _confirm(f"Trust {pf.path}? [y/N] "):
        print(f"not trusted: {pf.path} (nothing recorded)")
        return 1
    trust_mod.record(paths.trust_dir, pf)
    echo(f"trusted {pf.path} (sha256 {pf.sha256[:16]}…); any edit or move revokes this")
    return 0


def _confirm(question: str) -> bool:
    """Ask on the terminal; anything but y/yes (or end of input) is no."""
    print(question, end="", flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print()
    return answer.strip().lower() in ("y", "yes")


@app.command()
def plan(
    name: Optional[str] = typer.Argument(None, help="Profile name (default: the project's envbox.yaml).", autocompletion=complete_profiles),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """Show what launch would do: layers, mounts, env, limits."""
    from envbox.runtime import supervisor as launch_mod
    from envbox.app.prepare import prepare

    paths = envbox_paths()
    # An untrusted project file is shown too (that is how to look before trusting it): plan
    # only reads; it builds, downloads and runs nothing.
    prepared = prepare(paths, load_target(paths, name, require_trust=False), build=False)
    untrusted = prepared.profile.scope == "project" and not _is_trusted(paths, prepared.profile)
    from envbox.app.protect import protected_dirs

    readonly = tuple(protected_dirs(paths, create=False))
    data = prepared.plan.to_json(os.environ, os.getcwd(), launch_mod.launcher_argv(), readonly=readonly)
    data["cgroup"] = _cgroup_choice(prepared.plan.limits)
    data["fields"] = dict(prepared.profile.field_origins)
    if prepared.profile.scope == "project":
        data["trusted"] = not untrusted
    if untrusted:
        print(f"envbox: note: {prepared.profile.path} is not trusted: this is what it asks for; nothing was built or run", file=sys.stderr)
        print(f"hint: run 'envbox trust' in {prepared.profile.path.parent} to allow it", file=sys.stderr)
    from envbox.cli.render import render_plan

    emit(data, as_json=as_json, render=render_plan)
    return 0


def _is_trusted(paths, profile) -> bool:
    from envbox.config import trust as trust_mod

    try:
        return trust_mod.is_trusted(paths.trust_dir, trust_mod.read_project_file(profile.path, uid=os.getuid()))
    except EnvboxError:
        return False


def _cgroup_choice(limits) -> dict:
    from envbox.cgroups import control as cgroups

    if limits.empty():
        return {"backend": "none", "reason": "no limits in the profile", "problems": []}
    choice = cgroups.choose_backend(cgroups.probe(), limits)
    return {"backend": choice.name, "reason": choice.reason, "problems": list(choice.problems)}


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List the profiles envbox sees: name, scope, tools, file."""
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
    from envbox.cli.render import render_list

    emit(rows, as_json=as_json, render=render_list)
    return 0


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """Check what this machine can do for envbox."""
    from envbox.app.doctor import run_checks

    from envbox.cli.render import render_doctor

    results = run_checks(envbox_paths())
    emit([r.to_json() for r in results], as_json=as_json, render=render_doctor)
    return 1 if any(r.status == "FAIL" for r in results) else 0


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List running launches: profile, pid, memory, CPU."""
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
    from envbox.cli.render import render_ps

    emit(rows, as_json=as_json, render=render_ps)
    return 0


SHELLS = ("bash", "zsh", "fish")


@app.command()
def completion(shell: str = typer.Argument(..., help="bash, zsh or fish.", autocompletion=lambda incomplete: [s for s in SHELLS if s.startswith(incomplete)])) -> int:
    """Print the shell completion script for bash, zsh or fish."""
    if shell not in SHELLS:
        raise EnvboxError(f"no completion for shell {shell!r} (envbox has bash, zsh and fish)", "e.g. envbox completion bash > /usr/share/bash-completion/completions/envbox", exit_code=EXIT_USAGE)
    from typer._completion_shared import get_completion_script

    # The same script --install-completion writes, for the shell named (never guessed from the
    # parent process: packagers run this at build time).
    print(get_completion_script(prog_name="envbox", complete_var="_ENVBOX_COMPLETE", shell=shell))
    return 0


from envbox.cli import store as cli_store  # noqa: E402,F401  (registers the store commands on app)
from envbox.cli import beyond as cli_beyond  # noqa: E402,F401  (bin, enter, export: issue 15)
from envbox.cli.desktop import desktop_app  # noqa: E402  (a sub-app; its commands import lazily)

app.add_typer(desktop_app, name="desktop")


def _usage_errors() -> tuple[type, ...]:
    """What typer raises for bad usage: click's exceptions (typer < 0.20, as pinned, is built
    on click)."""
    import click

    return (click.ClickException,)


def _unknown_option(exc) -> str:
    """`envbox: unknown option ...` with the nearest option, or the command's options."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "envbox"
    known = sorted({o for p in ctx.command.params for o in getattr(p, "opts", ()) if o.startswith("-")}) if ctx is not None else []
    import difflib

    nearest = difflib.get_close_matches(exc.option_name, [o for o in known if o.startswith("--")], n=1, cutoff=0.6)
    hint = f"did you mean {nearest[0]}?" if nearest else f"'{where}' takes {', '.join(known)}"
    if ctx is not None and ctx.command.name in ("launch", "run"):
        hint += " (arguments for the app go after --)"
    return f"envbox: unknown option {exc.option_name} for '{where}'\nhint: {hint}"


def run_cli(argv: list[str], *, closed_fds: tuple = ()) -> int:
    """Run the typer app; the only place that turns errors into messages and exit codes.
    closed_fds: standard fds envbox was started without (main.reopen_closed_streams)."""
    state["closed_fds"] = tuple(closed_fds)
    try:
        result = build_command().main(args=argv, prog_name="envbox", standalone_mode=False)
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
        if type(exc).__name__ == "NoSuchOption":
            print(_unknown_option(exc), file=sys.stderr)
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
