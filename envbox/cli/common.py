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
    context_settings={"help_option_names": ["-h", "--help"]},
)
state = {"debug": False, "verbose": False}
FROZEN_HELP = "Use the profile's lock file exactly; refuse if it has none (any profile)."


def build_command():
    """The click command behind the typer app, with two of typer's help defects mended: with
    click >= 8.2 an argument's help text is lost (typer sets it before click's __init__ resets
    it), and with rich importable `[required]` is printed escaped as `\\[required]` although
    envbox renders help without rich."""
    import inspect

    import typer.core
    import typer.main

    typer.core.HAS_RICH = False  # help only: envbox's help is plain text (rich_markup_mode=None)
    command = typer.main.get_command(app)

    def mend(cmd) -> None:
        for sub in getattr(cmd, "commands", {}).values():
            mend(sub)
        if hasattr(cmd, "format_arguments"):  # newer click lists arguments itself; typer does too
            cmd.format_arguments = lambda ctx, formatter: None
        if cmd.callback is None:
            return
        try:
            declared = inspect.signature(cmd.callback).parameters
        except (TypeError, ValueError):
            return
        for param in cmd.params:
            info = declared.get(param.name)
            if isinstance(param, typer.core.TyperArgument) and param.help is None and info is not None:
                param.help = getattr(info.default, "help", None)

    mend(command)
    return command


def complete_profiles(incomplete: str) -> list[str]:
    """Names of the named profiles (never a project file: completion must not act on one)."""
    from envbox.config.scopes import all_profiles

    try:
        names = sorted({ref.name for ref, _ in all_profiles(envbox_paths())})
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def complete_tools(incomplete: str) -> list[str]:
    """Tool names in the catalog (shipped, system and user catalog.d)."""
    from envbox.app.prepare import catalog_loader

    try:
        names = catalog_loader(envbox_paths())().tools()
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def complete_entries(incomplete: str) -> list[str]:
    """Profiles that have an envbox desktop entry of this user."""
    from envbox.desktop import files as df

    try:
        names = sorted({item.mark.profile for item in df.find_installed(df.user_place(os.environ))})
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def envbox_paths():
    from envbox.config.paths import Paths

    return Paths.from_env()


def progress():
    """The build progress display (envbox.cli.progress): `with progress() as p: prepare(..., progress=p)`."""
    from envbox.cli.progress import Display

    return Display(verbose=state["verbose"])


def load_target(where, name: str | None, *, require_trust: bool = True):
    """A named profile, or (name None) the trusted project file found from the working directory
    (require_trust=False: trusted or not, for commands that only show it)."""
    from envbox.app.prepare import load_named, load_project

    if name is not None:
        return load_named(where, name)
    profile, warnings = load_project(where, os.environ, require_trust=require_trust)
    for warning in warnings:
        echo(f"envbox: warning: {warning}", err=True)
    return profile


def echo(text: str, *, err: bool = False) -> None:
    """Print human-readable output, each line through names.printable: names, paths, labels
    and commands come from files and records another program may have written, and must not
    reach the terminal as escape sequences."""
    from envbox.core.names import printable

    print("\n".join(printable(line) for line in str(text).split("\n")), file=sys.stderr if err else sys.stdout)
