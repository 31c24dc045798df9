"""File operations on cgroup trees that never follow a symlink, and signalling a cgroup's processes."""

from __future__ import annotations

import errno
import os
import _signal as signal  # not `signal`: it imports enum, too slow for the launch path
import time

# Every component is opened with O_NOFOLLOW: a delegated (user-writable) cgroup tree, or the
# scratch trees the tests build, could hold a symlink planted to turn "write memory.max" into
# a write somewhere else. cgroupfs itself never has symlinks, so this costs nothing real.
# O_PATH|O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR instead of opening the link.
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_CREAT is harmless on cgroupfs: kernfs has no create operation, so opening a missing
# control file still fails (EACCES), while in a scratch directory the same code writes a
# plain file. O_TRUNC is what a shell's '>' does; kernfs ignores it.
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def gone(exc: OSError) -> bool:
    """Whether an error says the cgroup is no longer there: ENOENT, or ENODEV when it was removed
    (by its manager: systemd removes an emptied scope at once) between opening and reading."""
    return exc.errno in (errno.ENOENT, errno.ENODEV)


class Dir:
    """An open directory (by fd, reached without following symlinks); use as a context manager."""

    def __init__(self, path: str):
        if not os.path.isabs(path):
            raise ValueError(f"not an absolute path: {path!r}")
        fd = os.open("/", _DIR_FLAGS)
        try:
            for part in path.split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    raise OSError(errno.EINVAL, "'..' in a cgroup path", path)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.path = path

    def __enter__(self) -> "Dir":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read(self, name: str) -> str:
        fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        try:
            return os.read(fd, 1 << 16).decode()
        finally:
            os.close(fd)

    def write(self, name: str, text: str) -> None:
        fd = os.open(name, _WRITE_FLAGS, 0o644, dir_fd=self.fd)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def mkdir(self, name: str) -> None:
        os.mkdir(name, 0o755, dir_fd=self.fd)

    def rmdir(self, name: str) -> None:
        os.rmdir(name, dir_fd=self.fd)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def subdirs(self) -> list[str]:
        # scandir() needs a readable fd (O_PATH cannot list); it dups it and leaves ours open.
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            with os.scandir(fd) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        finally:
            os.close(fd)


def read_file(path: str) -> str:
    """The text of a control file given by its full path."""
    parent, name = os.path.split(path)
    with Dir(parent) as d:
        return d.read(name)


def ensure_dir(parent: str, name: str) -> str:
    """mkdir parent/name unless it exists as a real directory; return the path."""
    with Dir(parent) as d:
        try:
            d.mkdir(name)
        except FileExistsError:
            os.close(os.open(name, _DIR_FLAGS, dir_fd=d.fd))  # a directory, not a symlink
    return os.path.join(parent, name)


def remove_dir(path: str) -> None:
    """rmdir one cgroup directory; a directory already gone is fine."""
    parent, name = os.path.split(path)
    try:
        with Dir(parent) as d:
            d.rmdir(name)
    except OSError as exc:
        if not gone(exc):
            raise


def keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.events, memory.oom_control, cpu.stat) -> dict."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def read_pids(path: str) -> list[int]:
    """The pids in a cgroup (its cgroup.procs); [] when the cgroup is gone."""
    try:
        text = read_file(os.path.join(path, "cgroup.procs"))
    except OSError as exc:
        if gone(exc):
            return []
        raise
    return [int(word) for word in text.split()]


def kill_pids(paths: tuple[str, ...]) -> int:
    """SIGKILL every process in the cgroups once; return how many were signalled.

    A pid read from cgroup.procs could exit and be reused before kill() reaches it. A pidfd
    pins the process: we open one per pid, read cgroup.procs again, and signal only pids that
    are still members, so a recycled pid that landed elsewhere is never hit."""
    me = os.getpid()
    pids = {p for path in paths for p in read_pids(path)} - {me}
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
    still = {p for path in paths for p in read_pids(path)}
    sent = 0
    for pid, fd in fds.items():
        try:
            if pid in still:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                sent += 1
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    return sent


def wait_until(predicate, seconds: float) -> bool:
    """Poll predicate with a short back-off (1 ms doubling to 50 ms) until true or time is up."""
    deadline = time.monotonic() + seconds
    delay = 0.001
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def process_start(pid: int | str) -> int | None:
    """The start time (clock ticks since boot, /proc/PID/stat field 22) of a process, or None.

    pid + start time names one process for the life of the machine: a pid alone can be reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and ')': the fields after it follow the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])
