"""envbox's desktop entries on disk: where they go, safe atomic writes, list, remove, sync."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from envbox.desktop.entries import FILE_NAME_RE, DesktopError, Mark, generate, generated_file_name, read_mark, wrap
from envbox.core.errors import EnvboxError
from envbox.fsio import FileRefused, read_limited, unlink_quiet

# /usr/share/applications belongs to the package manager; local additions go here.
SYSTEM_APPLICATIONS = "/usr/local/share/applications"
MAX_ENTRY_BYTES = 1 << 20
UPDATE_TIMEOUT = 60


@dataclass(frozen=True)
class Place:
    scope: str  # "user" | "system"
    directory: Path


@dataclass(frozen=True)
class Installed:
    """One of envbox's entries as found on disk."""

    path: Path
    scope: str
    mark: Mark
    original: str | None  # wrapped entries: "unchanged" | "changed" | "missing"; None if generated

    def to_json(self, *, orphan: bool) -> dict:
        return {"file": str(self.path), "scope": self.scope, "profile": self.mark.profile,
                "source": self.mark.source, "original": self.original, "orphan": orphan}


@dataclass(frozen=True)
class SyncResult:
    path: Path
    profile: str
    action: str  # "updated" | "unchanged" | "orphan" | "missing" | "error"
    detail: str = ""


def user_place(environ: Mapping[str, str]) -> Place:
    data = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data):  # the XDG spec: relative values are ignored
        data = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return Place("user", Path(data) / "applications")


def system_place(environ: Mapping[str, str]) -> Place:
    # ENVBOX_DESKTOP_SYSTEM_DIR lets tests run --system without touching the real machine.
    return Place("system", Path(environ.get("ENVBOX_DESKTOP_SYSTEM_DIR") or SYSTEM_APPLICATIONS))


def target_place(environ: Mapping[str, str], *, system: bool) -> Place:
    """Where install, remove and sync act: the user's directory, or (root only) the system's."""
    if not system:
        return user_place(environ)
    if os.geteuid() != 0:
        where = system_place(environ).directory
        raise EnvboxError(f"--system writes to {where}, which needs root", "run it as root (sudo), or leave out --system to act for yourself")
    return system_place(environ)


def launcher_path() -> str:
    """The envbox command that desktop entries run: the one on PATH, else this one."""
    found = os.path.abspath(shutil.which("envbox") or sys.argv[0])
    # Under `python -m envbox.main` argv[0] is main.py, which no desktop can run by itself.
    if not (os.path.isfile(found) and os.access(found, os.X_OK)) or found.endswith(".py"):
        raise EnvboxError(f"cannot tell which envbox command a desktop entry should run (found {found})", "put the envbox command on PATH (see install.sh), then try again")
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- reading ---------------------------------------------------------------------------------


def read_original(path: str) -> bytes:
    """An entry to wrap. It may be a symlink (packages install them) to a regular file; it is
    only read, and a FIFO or device is refused without blocking."""
    try:
        return read_limited(path, limit=MAX_ENTRY_BYTES, follow=True)[0]
    except FileRefused as exc:
        raise DesktopError(f"cannot read {path}: it {exc.why}", "name an existing entry, e.g. --from /usr/share/applications/APP.desktop") from None


def decode(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DesktopError(f"{path} is not UTF-8, as desktop entries must be") from None


def read_nofollow(path: Path) -> bytes | None:
    """A file in an applications directory, never through a symlink; None if it is absent."""
    try:
        return read_limited(path, limit=MAX_ENTRY_BYTES)[0]
    except FileRefused as exc:
        if exc.missing:
            return None
        if exc.why == "is a symbolic link":
            raise DesktopError(f"{path} is a symbolic link; envbox does not write or follow it", "remove the link if you did not make it, then try again") from None
        raise DesktopError(f"{path} {exc.why}; envbox leaves it alone") from None


def find_installed(place: Place) -> list[Installed]:
    """envbox's entries in one directory (files with its mark; symlinks are never envbox's)."""
    out = []
    try:
        names = sorted(os.listdir(place.directory))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    for name in names:
        path = place.directory / name
        if not FILE_NAME_RE.fullmatch(name):
            continue
        try:
            data = read_nofollow(path)
        except DesktopError:
            continue
        mark = read_mark(data.decode("utf-8", "replace")) if data else None
        if mark is not None:
            out.append(Installed(path, place.scope, mark, _original_state(mark)))
    return out


def _original_state(mark: Mark) -> str | None:
    if not mark.source:
        return None
    try:
        data = read_original(mark.source)
    except DesktopError:
        return "missing"
    return "unchanged" if sha256(data) == mark.source_hash else "changed"


# --- writing ---------------------------------------------------------------------------------


def entry_for(profile, *, source: str | None, launcher: str) -> tuple[str, str]:
    """(file name, text) of the entry for a profile: wrapping source, or generated."""
    if source is None:
        return generated_file_name(profile.name), generate(profile.name, profile.desktop, launcher=launcher, description=profile.description)
    source = os.path.abspath(source)
    name = os.path.basename(source)
    if not FILE_NAME_RE.fullmatch(name):
        raise DesktopError(f"{source}: not a usable desktop entry file name", "wrap a file named like APP.desktop")
    data = read_original(source)
    text = wrap(decode(data, source), profile=profile.name, launcher=launcher, source=source, source_hash=sha256(data))
    return name, text


def install(place: Place, name: str, text: str, *, profile: str) -> Path:
    """Write an entry atomically, refusing to replace anything that is not envbox's."""
    _ensure_dir(place.directory)
    target = place.directory / name
    _check_replaceable(target, profile)
    fd, tmp = tempfile.mkstemp(dir=place.directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        # rename() replaces a link planted since the check instead of following it.
        os.replace(tmp, target)
    except BaseException:
        unlink_quiet(tmp)
        raise
    return target


def _ensure_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid not in (0, os.geteuid()):
        raise DesktopError(f"{directory} belongs to another user (uid {st.st_uid})", "envbox writes entries only to a directory you or root own")


def _check_replaceable(target: Path, profile: str) -> None:
    data = read_nofollow(target)
    if data is None:
        return
    mark = read_mark(data.decode("utf-8", "replace"))
    if mark is None:
        raise DesktopError(
            f"{target} exists and was not made by envbox; leaving it alone",
            f"move it out of {target.parent} (to wrap it: envbox desktop install {profile} --from THE-MOVED-FILE)",
        )
    if mark.profile != profile:
        raise DesktopError(f"{target} is envbox's entry for profile {mark.profile}", f"remove that first: envbox desktop remove {mark.profile}")


def remove(place: Place, profile: str) -> list[Path]:
    removed = []
    for item in find_installed(place):
        if item.mark.profile == profile:
            item.path.unlink()
            removed.append(item.path)
    return removed


def sync(place: Place, *, launcher: str, exists: Callable[[str], bool], load: Callable) -> list[SyncResult]:
    """Rewrite entries that are out of date (original changed, profile's desktop: changed,
    envbox moved); report orphans (profile gone) and vanished originals; delete nothing."""
    results = []
    for item in find_installed(place):
        if not exists(item.mark.profile):
            results.append(SyncResult(item.path, item.mark.profile, "orphan", f"profile {item.mark.profile} no longer exists"))
        elif item.original == "missing":
            results.append(SyncResult(item.path, item.mark.profile, "missing", f"its original {item.mark.source} is gone"))
        else:
            results.append(_sync_one(place, item, launcher, load))
    return results


def _sync_one(place: Place, item: Installed, launcher: str, load: Callable) -> SyncResult:
    try:
        _, text = entry_for(load(item.mark.profile), source=item.mark.source, launcher=launcher)
        current = read_nofollow(item.path)
        if current is not None and current.decode("utf-8", "replace") == text:
            return SyncResult(item.path, item.mark.profile, "unchanged")
        install(place, item.path.name, text, profile=item.mark.profile)
    except EnvboxError as exc:
        return SyncResult(item.path, item.mark.profile, "error", exc.message)
    why = "the original changed" if item.original == "changed" else "rewritten from the profile"
    return SyncResult(item.path, item.mark.profile, "updated", why)


def update_database(directory: Path) -> str | None:
    """Refresh the MIME cache of an applications directory; a warning, or None."""
    from envbox import helper

    if shutil.which("update-desktop-database") is None:
        return None  # not installed: desktops then rescan on their own
    try:
        helper.run(["update-desktop-database", str(directory)], timeout_s=helper.timeout(UPDATE_TIMEOUT))
    except helper.HelperFailed as exc:
        return f"update-desktop-database {directory}: {exc.reason}"
    return None


