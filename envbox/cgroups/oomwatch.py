"""Count OOM kills in a cgroup that may vanish the moment its last process dies.

systemd removes a scope's cgroup as soon as it is empty, and an OOM kill with
memory.oom.group empties it at once: reading memory.events after the app died races that
removal (tests/vm case D5). A thread keeps the counter instead: it sleeps in poll(2) on
memory.events, which the kernel wakes on every change (cgroup-v2.rst: "a value change in this
file generates a file modified event"), and reads it while the cgroup is still there.

Notifications of one file come at most every 10 ms (CGROUP_FILE_NOTIFY_MIN_INTV); the kernel
counts `oom` just before it kills and `oom_kill` just after, so when `oom` moves the thread
looks again every millisecond for a while instead of waiting for the next notification.
Start it with the supervisor's signals blocked (threads inherit the mask). The
descriptor stays open until the process exits (the supervisor exits after its one launch):
closing it under a sleeping poll could hand its number to another file.

A thread can still lose that race when it gets no CPU in time (a loaded 2-vCPU guest under
emulation did, once in a dozen OOM launches). The parent's memory.events (envbox.slice, which
outlives the scope) counts its descendants' kills too (cgroup-v2.rst: "all fields in this file
are hierarchical"), and the kernel adds to every ancestor at the kill itself. So each time the
thread reads the scope it first notes the parent's count; if the app died of SIGKILL and the
scope's own count was never seen to move, a parent count above the one noted at the last read
of the live scope is this scope's kill. Only a sibling's OOM kill in that same instant, while
this app was killed by someone else, could be counted wrongly.
"""

from __future__ import annotations

import os
import select
import threading
import time

from envbox.cgroups.fs import keyed

_LOOK_AGAIN_MS = 1
_LOOKS = 200  # after `oom` moved: up to ~200 ms of 1 ms looks


class OomWatch:
    def __init__(self, events_path: str, parent_events_path: str | None = None):
        self.kills = 0
        self._fd = _open(events_path)
        try:
            self._parent_fd = _open(parent_events_path) if parent_events_path else None
        except OSError:  # no memory controller there: no fallback
            self._parent_fd = None
        self._ooms = 0
        self._parent_base = None
        self._round()
        self._thread = threading.Thread(target=self._run, name="envbox-oom-watch", daemon=True)
        self._thread.start()

    def _read(self) -> bool:
        """Update the counters; False once the file is gone (its cgroup was removed)."""
        counts = _counts(self._fd)
        if counts is None:
            return False
        self.kills = max(self.kills, counts.get("oom_kill", 0))
        self._ooms = counts.get("oom", self._ooms)
        return True

    def _parent_kills(self) -> int | None:
        counts = None if self._parent_fd is None else _counts(self._parent_fd)
        return None if counts is None else counts.get("oom_kill", 0)

    def _round(self) -> bool:
        """One look: the parent's count, then the scope's; the parent's is kept as the base
        only when the scope was still there to be read after it."""
        parent = self._parent_kills()
        if not self._read():
            return False
        self._parent_base = parent
        return True

    def _run(self) -> None:
        poller = select.poll()
        for fd in (self._fd, self._parent_fd):
            if fd is not None:
                poller.register(fd, select.POLLPRI | select.POLLERR)
        looks, seen_ooms = 0, self._ooms
        try:
            while True:
                poller.poll(_LOOK_AGAIN_MS if looks else None)
                if not self._round():
                    return
                if self._ooms != seen_ooms:
                    seen_ooms, looks = self._ooms, _LOOKS
                elif looks:
                    looks -= 1
        except OSError:
            return

    def killed(self, wait: float = 0.25) -> bool:
        """Whether an OOM kill was counted. Asked once the app died of SIGKILL: the kernel
        counted the kill before it sent it, so give the thread a moment to have read it; then
        the parent's count (see the module's doc) for a scope removed before it could."""
        deadline = time.monotonic() + wait
        while not self.kills and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.kills > 0:
            return True
        base, now = self._parent_base, self._parent_kills()
        return base is not None and now is not None and now > base


def _open(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)


def _counts(fd: int) -> dict | None:
    """memory.events read again from the start (pread: the thread and killed() may read the
    parent's at once); None once its cgroup is gone."""
    try:
        return keyed(os.pread(fd, 4096, 0).decode("ascii", "replace"))
    except OSError:
        return None
