"""What `envbox gc` may delete from the download cache, and deleting it.

The cache (`$XDG_CACHE_HOME/envbox/downloads`) holds downloaded artifacts by sha256 (with an
sha512 link and an origin note each), and per Debian suite apt's own lists plus envbox's parsed
copies of them (`apt/<suite>-<arch>-<hash>/lists`, `.../index`) and computed dependency
closures (`apt/closures`). Kept: the artifacts of every stored layer and every lock file of a
profile in use (a repair or a lock check finds them without downloading again), and the apt
lists of the suites that still have a layer to build (fresh ones: lists a day old are
refreshed by the next build anyway). Everything else is only a head start that a later build can
redo: lists of suites whose layers are all built (a later build runs `apt-get update` again,
as it does anyway once lists are a day old), stale closures, unreferenced artifacts, and
leftovers of interrupted downloads.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from envbox.fsio import listdir_sorted
from envbox.sources.deb import LISTS_MAX_AGE

TMP_MAX_AGE = 3600  # seconds: an older file in downloads/tmp belongs to no running download


@dataclass(frozen=True)
class Prunable:
    path: Path
    size: int  # bytes
    what: str  # one line for the user


def size_of(path: Path) -> int:
    """Bytes in a file or tree (apparent sizes; links and directories count nothing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size if not os.path.islink(path) else 0
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            total += st.st_size if not os.path.islink(os.path.join(top, name)) else 0
    return total


def suite_of(dir_name: str) -> str:
    """'bullseye-amd64-e765e4f6e1e3' -> 'bullseye' (deb.update_lists names them so)."""
    return dir_name.rsplit("-", 2)[0]


def plan(downloads: Path, *, keep_sha256: set[str], pending_suites: set[str], now: float | None = None) -> list[Prunable]:
    """What may go, with sizes. Reads only."""
    now = time.time() if now is None else now
    out: list[Prunable] = []
    apt = downloads / "apt"
    kept_stamps = []
    for name in listdir_sorted(apt):
        base = apt / name
        if name == "closures" or not base.is_dir():
            continue
        stamp = base / "updated"
        try:
            age = now - stamp.stat().st_mtime
        except FileNotFoundError:
            age = None
        if suite_of(name) in pending_suites and age is not None and age <= LISTS_MAX_AGE:
            kept_stamps.append(now - age)
            continue
        why = "lists a day old (refreshed anyway)" if suite_of(name) in pending_suites else "no layer left to build from it"
        for sub in ("lists", "index"):
            if (base / sub).exists():
                out.append(Prunable(base / sub, size_of(base / sub), f"apt {sub} of {suite_of(name)}: {why}"))
    # A closure is computed after its suite's last update: one older than every kept suite's
    # update was computed from lists that are gone.
    oldest_kept = min(kept_stamps, default=None)
    for name in listdir_sorted(apt / "closures"):
        path = apt / "closures" / name
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if oldest_kept is None or mtime < oldest_kept:
            out.append(Prunable(path, size_of(path), "dependency closure computed from lists that are gone"))
    unused = [d for d in listdir_sorted(downloads / "sha256") if d not in keep_sha256 and not d.startswith(".")]
    inodes = {}
    for digest in unused:
        path = downloads / "sha256" / digest
        try:
            inodes[os.lstat(path).st_ino] = digest
        except FileNotFoundError:
            continue
        origin = _origin_name(downloads, digest)
        out.append(Prunable(path, size_of(path), f"download {origin} used by no stored layer or lock"))
        if (downloads / "origin" / f"{digest}.json").exists():
            out.append(Prunable(downloads / "origin" / f"{digest}.json", size_of(downloads / "origin" / f"{digest}.json"), f"note of {origin}"))
    for name in listdir_sorted(downloads / "sha512"):
        path = downloads / "sha512" / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_ino in inodes:
            out.append(Prunable(path, 0, f"second name of {_origin_name(downloads, inodes[st.st_ino])}"))
        elif st.st_nlink == 1:  # its sha256 name is gone (fetch makes that one first)
            out.append(Prunable(path, st.st_size, "download with no sha256 name"))
    for name in listdir_sorted(downloads / "tmp"):
        path = downloads / "tmp" / name
        try:
            if now - os.lstat(path).st_mtime > TMP_MAX_AGE:
                out.append(Prunable(path, size_of(path), "left by an interrupted download"))
        except FileNotFoundError:
            continue
    return out


def _origin_name(downloads: Path, digest: str) -> str:
    import json

    try:
        name = json.loads((downloads / "origin" / f"{digest}.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else digest[:16]


def apply(items: list[Prunable], downloads: Path) -> list[Prunable]:
    """Delete the items; apt state only under its suite's lock, taken without waiting (a build
    using that suite keeps it). Returns what was deleted."""
    done = []
    locks: dict[Path, int | None] = {}
    try:
        for item in items:
            base = _suite_dir(downloads, item.path)
            if base is not None:
                if base not in locks:
                    locks[base] = _try_lock(base)
                if locks[base] is None:
                    continue  # a build is using the suite's lists right now
                (base / "updated").unlink(missing_ok=True)  # the next build updates first
            if _remove(item.path):
                done.append(item)
    finally:
        for fd in locks.values():
            if fd is not None:
                os.close(fd)
    return done


def _suite_dir(downloads: Path, path: Path) -> Path | None:
    apt = downloads / "apt"
    if path.parent.parent == apt and path.parent.name != "closures":
        return path.parent
    return None


def _try_lock(base: Path) -> int | None:
    try:
        fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    return True
