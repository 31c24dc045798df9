"""Small file-system helpers every layer shares: atomic writes, quiet unlinks, directory
listings, whether a process lives, bounded non-blocking reads of files given by path, and
whether a state directory is this user's own. Stdlib only and cheap to import."""

from __future__ import annotations

import errno
import os
import stat


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


class FileRefused(Exception):
    """A file that read_limited will not read, with why in words ('is a FIFO, not a regular
    file'); callers name the file: f"{path}: {exc.why}"."""

    def __init__(self, why: str, *, missing: bool = False):
        super().__init__(why)
        self.why = why
        self.missing = missing


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


def kind(mode: int) -> str:
    """'a FIFO', 'a directory', ... for messages."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def open_regular(path, *, follow: bool = False) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without blocking: (fd, its fstat).

    Never blocks (O_NONBLOCK: a FIFO or device is refused after fstat, not waited on), never
    makes the file the controlling terminal, and with follow=False never follows a final
    symlink. Anything else raises FileRefused saying why, for the caller to name the file.
    For streaming a large file (a local archive); read_limited reads a whole small one."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused("no such file", missing=True) from None
    except IsADirectoryError:
        raise FileRefused("is a directory, not a file") from None
    except PermissionError:
        raise FileRefused("permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused("is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a socket
            raise FileRefused("is a socket, not a regular file") from None
        raise FileRefused(exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileRefused("is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"is {kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)  # a regular file: reads behave as usual from here
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_fd(fd: int, *, limit: int) -> bytes:
    """The rest of an open file, refusing more than limit bytes (it may grow while we read)."""
    chunks, total = [], 0
    while chunk := os.read(fd, 65536):
        total += len(chunk)
        if total > limit:
            raise FileRefused(f"is more than the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def read_limited(path, *, limit: int, follow: bool = False) -> tuple[bytes, os.stat_result]:
    """Read a whole regular file of at most limit bytes, with the stat of what was read: the
    one reader for every file a user, catalog, profile, project or another process could have
    put at a path (open_regular's rules; FileRefused saying why)."""
    fd, st = open_regular(path, follow=follow)
    try:
        if st.st_size > limit:
            raise FileRefused(f"is {st.st_size} bytes, more than the {limit}-byte limit")
        return read_fd(fd, limit=limit), st
    finally:
        os.close(fd)


def read_quiet(path, *, limit: int, follow: bool = False) -> bytes | None:
    """read_limited for envbox's own small state files: None when absent or refused (the
    caller treats it like a missing record)."""
    try:
        return read_limited(path, limit=limit, follow=follow)[0]
    except FileRefused:
        return None


def private_dir_problem(path, *, uid: int | None = None) -> str | None:
    """Why a directory of envbox's own state cannot be trusted, or None when it can (or does
    not exist): it must be a real directory (not a symlink), this user's, writable by no one
    else. /tmp/envbox-UID, a shared cache: another user may have made it first."""
    uid = os.getuid() if uid is None else uid
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect {os.fspath(path)}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{os.fspath(path)} is {kind(st.st_mode)}, not a directory"
    if st.st_uid != uid:
        return f"{os.fspath(path)} belongs to uid {st.st_uid}, not to uid {uid}"
    if st.st_mode & 0o022:
        return f"{os.fspath(path)} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None
