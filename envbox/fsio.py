"""Small file-system helpers every layer shares: atomic writes, quiet unlinks, directory
listings, whether a process lives. Stdlib only and cheap to import."""

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
    """A file that read_limited will not read, with why in words ('is not a regular file')."""

    def __init__(self, why: str, *, missing: bool = False):
        super().__init__(why)
        self.why = why
        self.missing = missing


def read_limited(path, *, limit: int, follow: bool = False) -> tuple[bytes, os.stat_result]:
    """Read a whole regular file of at most limit bytes, with the stat of what was read.

    Never blocks (O_NONBLOCK: a FIFO or device is refused after fstat, not waited on), never
    makes the file the controlling terminal, and with follow=False never follows a final
    symlink. Anything else raises FileRefused saying why, for the caller to name the file."""
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
        raise FileRefused(exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileRefused("is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("is not a regular file")
        if st.st_size > limit:
            raise FileRefused(f"is {st.st_size} bytes, more than the {limit}-byte limit")
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):
            total += len(chunk)
            if total > limit:  # it grew while we read
                raise FileRefused(f"is more than the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)
