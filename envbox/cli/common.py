"""What the CLI modules share: the typer app, paths, progress, the profile a command means."""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="envbox",
    help="Run each app with its own tool versions at /usr/bin/..., in its own mount namespace.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
PASS_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
state = {"debug": False}


def complete_profiles(incomplete: str) -> list[str]:
    """Names of the named profiles (never a project file: completion must not act on one)."""
    from envbox.config.scopes import all_profiles

    try:
        names = sorted({ref.name for ref, _ in all_profiles(envbox_paths())})
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def envbox_paths():
    from envbox.config.paths import Paths

    return Paths.from_env()


def progress(message: str) -> None:
    if sys.stderr.isatty():
        echo(f"envbox: {message}", err=True)


def load_target(where, name: str | None):
    """A named profile, or (name None) the trusted project file found from the working directory."""
    from envbox.app.prepare import load_named, load_project

    if name is not None:
        return load_named(where, name)
    profile, warnings = load_project(where, os.environ)
    for warning in warnings:
        echo(f"envbox: warning: {warning}", err=True)
    return profile


def echo(text: str, *, err: bool = False) -> None:
    """Print human-readable output, each line through names.printable: names, paths, labels
    and commands come from files and records another program may have written, and must not
    reach the terminal as escape sequences."""
    from envbox.core.names import printable

    print("\n".join(printable(line) for line in str(text).split("\n")), file=sys.stderr if err else sys.stdout)
