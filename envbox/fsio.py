"""Small file-system helpers every layer shares: atomic writes, quiet unlinks, directory
listings, whether a process lives. Stdlib only and cheap to import."""

from __future__ import annotations

import os


def write_atomic(path, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Readers see the old file or the new one, never half of it; a crash leaves at most a
    dot-named temporary file beside it."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    unlink_quiet(tmp)  # left by a crashed process that had our pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise


def write_text_atomic(path, text: str, *, mode: int = 0o644) -> None:
    """write_atomic for text; names that are not valid UTF-8 survive (surrogateescape)."""
    write_atomic(path, text.encode("utf-8", "surrogateescape"), mode=mode)


def unlink_quiet(path) -> None:
    """Remove a file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def listdir_sorted(path) -> list[str]:
    """The names in a directory, sorted; none if it does not exist."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def pid_alive(pid: int) -> bool:
    """Whether a process exists and has not exited: a zombie (exited, not yet reaped) has
    closed its files and released its locks, so it counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
