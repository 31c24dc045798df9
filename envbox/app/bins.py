"""Commands on PATH: small wrappers that run `envbox launch NAME -- "$@"`.

Each wrapper carries a marker line (MARKER), so envbox only ever replaces or removes a file
it wrote itself; anything else at the same path is refused."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from envbox.core.errors import EXIT_USAGE, EnvboxError
from envbox.core.names import NAME_RULE, is_valid_name
from envbox.fsio import FileRefused, listdir_sorted, read_limited, write_text_atomic

MARKER = "# envbox-bin: profile="
MAX_WRAPPER = 4096  # our wrappers are a few hundred bytes; anything bigger is not ours


@dataclass(frozen=True)
class Wrapper:
    command: str
    profile: str
    path: Path
    envbox: str  # the envbox the wrapper runs


def bin_dir(environ, uid: int) -> Path:
    """$ENVBOX_BIN_DIR, else /usr/local/bin for root, ~/.local/bin for anyone else."""
    explicit = environ.get("ENVBOX_BIN_DIR")
    if explicit:
        return Path(explicit)
    if uid == 0:
        return Path("/usr/local/bin")
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".local" / "bin"


def render(profile: str, envbox: str) -> str:
    """The wrapper's text: exec envbox's launcher with `launch NAME -- args` (the form the
    fast launch path serves)."""
    return (
        "#!/bin/sh\n"
        f"{MARKER}{profile}\n"
        f"# Written by 'envbox bin install'; 'envbox bin remove' removes it. Edits are lost on reinstall.\n"
        f"exec {shlex.quote(envbox)} launch {shlex.quote(profile)} -- \"$@\"\n"
    )


def parse(text: str) -> tuple[str, str] | None:
    """(profile, envbox) from a wrapper's text, or None if envbox did not write it."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[0] != "#!/bin/sh" or not lines[1].startswith(MARKER):
        return None
    profile = lines[1][len(MARKER):]
    try:
        words = shlex.split(lines[3])
    except ValueError:
        return None
    if not is_valid_name(profile) or len(words) < 5 or words[0] != "exec" or words[2:4] != ["launch", profile]:
        return None
    return profile, words[1]


def read(path: Path) -> Wrapper | None:
    """The wrapper at path, or None if there is none or it is not envbox's."""
    try:
        data, _ = read_limited(path, limit=MAX_WRAPPER)
    except FileRefused:
        return None
    found = parse(data.decode("utf-8", "replace"))
    return Wrapper(path.name, found[0], path, found[1]) if found else None


def check_command(command: str) -> None:
    if not is_valid_name(command):
        raise EnvboxError(f"{command!r} cannot be a command name (use {NAME_RULE})", "pick another name with --as CMD", exit_code=EXIT_USAGE)


def install(directory: Path, command: str, profile: str, envbox: str) -> tuple[Path, bool]:
    """Write (or rewrite our own) wrapper; (path, replaced). Refuses anything not ours."""
    check_command(command)
    path = directory / command
    replaced = False
    if os.path.lexists(path):
        if read(path) is None:
            raise EnvboxError(
                f"{path} exists and was not written by envbox; not replacing it",
                f"pick another name with 'envbox bin install {profile} --as CMD', or remove that file yourself",
            )
        replaced = True
    try:
        os.makedirs(directory, exist_ok=True)
        write_text_atomic(path, render(profile, envbox), mode=0o755)
    except OSError as exc:
        raise EnvboxError(f"cannot write {path}: {exc.strerror or exc}", "set ENVBOX_BIN_DIR to a directory you can write") from None
    return path, replaced


def remove(directory: Path, command: str) -> Wrapper:
    check_command(command)
    path = directory / command
    if not os.path.lexists(path):
        raise EnvboxError(f"no command {command!r} in {directory}", "run 'envbox bin list' to see the installed ones")
    found = read(path)
    if found is None:
        raise EnvboxError(f"{path} was not written by envbox; not removing it", "remove it yourself if it is yours to remove")
    try:
        os.unlink(path)
    except OSError as exc:
        raise EnvboxError(f"cannot remove {path}: {exc.strerror or exc}", "check the directory's permissions") from None
    return found


def listing(directory: Path) -> list[Wrapper]:
    out = []
    for name in listdir_sorted(directory):
        if name.startswith("."):
            continue
        found = read(directory / name)
        if found is not None:
            out.append(found)
    return out


def on_path(directory: Path, environ) -> bool:
    want = os.path.realpath(directory)
    return any(os.path.realpath(d) == want for d in environ.get("PATH", "").split(":") if d)


def envbox_command(argv0: str) -> str:
    """The envbox a wrapper should run: this one by absolute path (a wrapper must not depend
    on PATH, which may find the wrapper itself), else plain `envbox`."""
    if argv0 and os.path.basename(argv0) == "envbox":
        path = os.path.abspath(argv0) if "/" in argv0 else _which(argv0)
        if path and os.access(path, os.X_OK):
            return path
    return _which("envbox") or "envbox"


def _which(name: str) -> str | None:
    import shutil

    found = shutil.which(name)
    return os.path.abspath(found) if found else None
