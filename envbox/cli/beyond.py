"""Beyond one machine and one terminal: `envbox bin ...`, `envbox enter`, `envbox export`.
Thin; lazy imports. Registered on the app by cli/commands.py, like cli/store.py."""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

from envbox.cli.common import PASS_ARGS, app, complete_profiles, envbox_paths

bin_app = typer.Typer(
    help="Commands on PATH that launch a profile (wrappers in ~/.local/bin; root: /usr/local/bin).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(bin_app, name="bin")


@bin_app.callback()
def _bin() -> None:
    """Commands on PATH that launch a profile (wrappers in ~/.local/bin; root: /usr/local/bin)."""


@bin_app.command("install")
def bin_install(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_profiles),
    as_: Optional[str] = typer.Option(None, "--as", help="The command's name (default: the profile's name)."),
) -> int:
    """Write a wrapper so typing CMD runs `envbox launch NAME -- ARGS`."""
    from envbox.app import bins
    from envbox.app.prepare import load_named

    profile = load_named(envbox_paths(), name)  # refuses a profile that does not exist
    directory = bins.bin_dir(os.environ, os.getuid())
    path, replaced = bins.install(directory, as_ or profile.name, profile.name, bins.envbox_command(sys.argv[0]))
    print(f"{'updated' if replaced else 'installed'} {path} -> envbox launch {profile.name}")
    if not bins.on_path(directory, os.environ):
        print(f"envbox: warning: {directory} is not on your PATH\nhint: add it, e.g. export PATH=\"{directory}:$PATH\" in your shell's profile", file=sys.stderr)
    return 0


@bin_app.command("list")
def bin_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """The wrappers envbox installed: command, profile, file."""
    from envbox.app import bins

    rows = [{"command": w.command, "profile": w.profile, "path": str(w.path), "envbox": w.envbox}
            for w in bins.listing(bins.bin_dir(os.environ, os.getuid()))]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no commands installed (envbox bin install NAME)")
    for r in rows:
        print(f"{r['command']:<20} {r['profile']:<20} {r['path']}")
    return 0


@bin_app.command("remove")
def bin_remove(command: str = typer.Argument(..., help="The command's name (as in 'envbox bin list').")) -> int:
    """Remove a wrapper envbox installed (never a file envbox did not write)."""
    from envbox.app import bins

    found = bins.remove(bins.bin_dir(os.environ, os.getuid()), command)
    print(f"removed {found.path}")
    return 0


@app.command(context_settings=PASS_ARGS)
def enter(
    target: str = typer.Argument(..., help="A running launch: its profile's name, or a pid from 'envbox ps'."),
    command: Optional[List[str]] = typer.Argument(None, help="The command to run inside (after --; default: a shell)."),
) -> int:
    """A shell (or CMD) inside a running launch: its namespaces, cgroup, environment, cwd."""
    from envbox.runtime import enter as enter_mod
    from envbox.runtime.running import launch_records

    records = launch_records(envbox_paths().runtime_dir)
    from envbox.runtime.procs import proc_parents

    parents = proc_parents()
    supervisor, record = enter_mod.pick(records, target, parents)
    return enter_mod.run(enter_mod.Target(supervisor, record, parents), list(command or []) or None)
