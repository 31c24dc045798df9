"""Find a project's envbox.yaml by walking up from the working directory. Reads directories.

Stdlib only and free of pathlib: the fast launch path calls find() too.
"""

from __future__ import annotations

import os
import stat

FILE_NAMES = ("envbox.yaml", ".envbox.yaml")


class ProjectError(Exception):
    """Discovery failed in a way the user must hear about (message, hint)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def ceilings(environ) -> set[str]:
    """Directories the walk never enters: $HOME, /, and each of $ENVBOX_CEILING_PATHS."""
    out = {"/"}
    home = environ.get("HOME")
    if home:
        out.add(os.path.realpath(home))
    for item in (environ.get("ENVBOX_CEILING_PATHS") or "").split(":"):
        if item:
            out.add(os.path.realpath(item))
    return out


def find(environ, cwd: str | None = None) -> str | None:
    """The nearest project file from cwd upwards, or None.

    The working directory itself is always searched; its parents are searched up to, but not
    including, the first ceiling. An unreadable directory ends the walk (it is treated as a
    ceiling) rather than failing.
    """
    if cwd is None:
        try:
            cwd = os.getcwd()
        except FileNotFoundError:
            raise ProjectError("the current directory no longer exists", "cd to an existing directory") from None
    stop = ceilings(environ)
    directory = cwd
    first = True
    while True:
        if not first and directory in stop:
            return None
        for name in FILE_NAMES:
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except (PermissionError, NotADirectoryError):
                return None
            if stat.S_ISLNK(st.st_mode):
                raise ProjectError(f"{path} is a symlink; project files must be regular files", "replace the link with the file itself")
            return path
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
        first = False
