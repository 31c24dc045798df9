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
    def __init__(self, events_path: str):
        self.kills = 0
        self._fd = os.open(events_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        self._ooms = 0
        self._read()
        self._thread = threading.Thread(target=self._run, name="envbox-oom-watch", daemon=True)
        self._thread.start()

    def _read(self) -> bool:
        """Update the counters; False once the file is gone (its cgroup was removed)."""
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            text = os.read(self._fd, 4096).decode("ascii", "replace")
        except OSError:
            return False
        counts = keyed(text)
        self.kills = max(self.kills, counts.get("oom_kill", 0))
        self._ooms = counts.get("oom", self._ooms)
        return True

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLPRI | select.POLLERR)
        looks, seen_ooms = 0, self._ooms
        try:
            while True:
                poller.poll(_LOOK_AGAIN_MS if looks else None)
                if not self._read():
                    return
                if self._ooms != seen_ooms:
                    seen_ooms, looks = self._ooms, _LOOKS
                elif looks:
                    looks -= 1
        except OSError:
            return

    def killed(self, wait: float = 0.25) -> bool:
        """Whether an OOM kill was counted. Asked once the app died of SIGKILL: the kernel
        counted the kill before it sent it, so give the thread a moment to have read it."""
        deadline = time.monotonic() + wait
        while not self.kills and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.kills > 0
