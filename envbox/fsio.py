"""Write a file atomically: a temporary file beside it, then a rename. Stdlib only."""

from __future__ import annotations

import os


def write_atomic(path, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Readers see the old file or the new one, never half of it; a crash leaves at most a
    dot-named temporary file beside it."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)  # left by a crashed process that had our pid
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
