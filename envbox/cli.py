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


def _paths():
    from .paths import Paths

    return Paths.from_env()


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"envbox: {message}", file=sys.stderr)


def _launch(profile, argv_extra: list[str], *, command: list[str] | None, frozen: bool, allow_unenforced: bool) -> int:
    from . import launch
    from .prepare import prepare

    paths = _paths()
    prepared = prepare(paths, profile, build=True, frozen=frozen, progress=_progress)
    plan = prepared.plan
    if command is not None:
        from dataclasses import replace

        plan = replace(plan, argv=tuple(command))
        argv_extra = []
    if not plan.argv:
        raise EnvboxError(f"profile {profile.name} has no command", f"add `command: [...]` to {profile.path}, or use 'envbox run --profile {profile.name} -- CMD'")
    args = plan.sandbox_args(os.environ, os.getcwd(), extra=tuple(argv_extra))
    if _state["debug"]:
        args = ["--debug", *args]
    spec = launch.LaunchSpec(
        profile=plan.profile,
        sandbox_args=tuple(args),
        limits={"memory": plan.limits.memory, "memory_swap": plan.limits.memory_swap, "cpu": plan.limits.cpu, "pids": plan.limits.pids},
        allow_unenforced=allow_unenforced or plan.allow_unenforced,
        layer_digests=tuple(l.digest for l in plan.layers if l.digest),
        store_root=str(paths.store),
        runtime_dir=str(paths.runtime_dir),
    )
    sys.stdout.flush()
    return launch.run(spec)


@app.command(context_settings=PASS_ARGS)
def launch(
    name: str = typer.Argument(..., help="Profile name."),
    args: Optional[List[str]] = typer.Argument(None, help="Arguments appended to the profile's command (after --)."),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Launch a profile's command in its environment."""
    from .prepare import load_named

    return _launch(load_named(_paths(), name), list(args or []), command=None, frozen=frozen, allow_unenforced=allow_unenforced)


@app.command(context_settings=PASS_ARGS)
def run(
    command: Optional[List[str]] = typer.Argument(None, help="The command to run (after --)."),
    profile: str = typer.Option(..., "--profile", "-p", help="Profile whose environment to use."),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
    allow_unenforced: bool = typer.Option(False, "--allow-unenforced", help="Run even if a limit cannot be enforced (warns)."),
) -> int:
    """Run any command in a profile's environment."""
    from .prepare import load_named

    if not command:
        raise EnvboxError("no command given", "usage: envbox run --profile NAME -- CMD [ARGS...]", exit_code=EXIT_USAGE)
    return _launch(load_named(_paths(), profile), [], command=list(command), frozen=frozen, allow_unenforced=allow_unenforced)


@app.command()
def plan(
    name: str = typer.Argument(..., help="Profile name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """Show what launch would do: layers, mounts, env, limits, sandbox command."""
    from . import launch as launch_mod
    from .prepare import load_named, prepare

    paths = _paths()
    prepared = prepare(paths, load_named(paths, name), build=False)
    data = prepared.plan.to_json(os.environ, os.getcwd(), launch_mod.launcher_argv())
    data["cgroup"] = _cgroup_choice(prepared.plan.limits)
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
        print(f"envbox: {exc.format_message()}", file=sys.stderr)
        print("hint: run 'envbox --help' for usage", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if _state["debug"]:
            raise
        print(f"envbox: {exc}", file=sys.stderr)
        return EXIT_ENVBOX
    return result if isinstance(result, int) else 0
