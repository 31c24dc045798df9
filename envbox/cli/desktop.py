"""`envbox desktop ...`: launcher entries that start apps through envbox. Thin; lazy imports."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from envbox.cli.common import complete_entries, complete_profiles
from envbox.core.errors import EXIT_USAGE, EnvboxError
from envbox.cli.common import echo

desktop_app = typer.Typer(
    help="Menu entries that start apps through envbox.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@desktop_app.callback()
def _desktop() -> None:
    """Menu entries that start apps through envbox."""


@desktop_app.command()
def install(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_profiles),
    source: Optional[str] = typer.Option(None, "--from", help="An existing .desktop entry to wrap (default: the profile's desktop.from)."),
    system: bool = typer.Option(False, "--system", help="For every user, in /usr/local/share/applications (root only)."),
) -> int:
    """Add a menu entry for a profile (or wrap an app's entry)."""
    from envbox.desktop import files as df
    from envbox.app.prepare import load_named

    place = df.target_place(os.environ, system=system)
    profile = load_named(_paths(), name)
    if source is None and profile.desktop is not None:
        source = profile.desktop.source
    file_name, text = df.entry_for(profile, source=source, launcher=df.launcher_path())
    path = df.install(place, file_name, text, profile=profile.name)
    _refresh(place.directory)
    echo(f"installed {path}")
    if source is None and profile.desktop is None:
        print(f"note: {profile.name} has no desktop: section; the entry's name and comment come from the profile's name and description", file=sys.stderr)
    return 0


@desktop_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """List envbox's menu entries and what each wraps."""
    from envbox.desktop import files as df

    exists = _profile_exists(_paths())
    rows = [
        item.to_json(orphan=not exists(item.mark.profile))
        for place in (df.user_place(os.environ), df.system_place(os.environ))
        for item in df.find_installed(place)
    ]
    from envbox.cli.render import render_desktop_entries
    from envbox.cli.table import emit

    emit(rows, as_json=as_json, render=render_desktop_entries)
    return 0


@desktop_app.command()
def remove(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_entries),
    system: bool = typer.Option(False, "--system", help="Remove the system-wide entry (root only)."),
) -> int:
    """Remove the menu entries envbox made for a profile."""
    from envbox.desktop import files as df
    from envbox.core.names import NAME_RULE, describe_bad_name, is_valid_name

    if not is_valid_name(name):
        raise EnvboxError(f"bad profile name {describe_bad_name(name)}", f"names use {NAME_RULE}", exit_code=EXIT_USAGE)
    place = df.target_place(os.environ, system=system)
    removed = df.remove(place, name)
    if not removed:
        raise EnvboxError(f"no envbox desktop entry for {name} in {place.directory}", "run 'envbox desktop list' to see them")
    _refresh(place.directory)
    for path in removed:
        echo(f"removed {path}")
    return 0


@desktop_app.command()
def sync(system: bool = typer.Option(False, "--system", help="Sync the system-wide entries (root only).")) -> int:
    """Rewrite entries whose original or profile changed."""
    from envbox.desktop import files as df
    from envbox.app.prepare import load_named

    place = df.target_place(os.environ, system=system)
    paths = _paths()
    results = df.sync(place, launcher=df.launcher_path(), exists=_profile_exists(paths), load=lambda n: load_named(paths, n))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.action] = counts.get(r.action, 0) + 1
        if r.action == "error":
            echo(f"envbox: {r.path}: {r.detail}", err=True)
        elif r.action == "orphan":
            echo(f"orphan   {r.path}: {r.detail} (kept; 'envbox desktop remove {r.profile}' deletes it)")
        elif r.action != "unchanged":
            echo(f"{r.action:<8} {r.path}: {r.detail}")
    if counts.get("updated"):
        _refresh(place.directory)
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no entries"
    print(f"sync: {summary}", file=sys.stderr)
    return 1 if counts.get("error") else 0


def _paths():
    from envbox.config.paths import Paths

    return Paths.from_env()


def _profile_exists(paths):
    from envbox.core.errors import ProfileError
    from envbox.config.scopes import find_profile

    def exists(name: str) -> bool:
        try:
            find_profile(paths, name)
        except ProfileError:
            return False
        return True

    return exists


def _refresh(directory) -> None:
    from envbox.desktop.files import update_database

    warning = update_database(directory)
    if warning:
        echo(f"envbox: warning: {warning}", err=True)
