"""Is a single-instance app already running outside its envbox environment? Stdlib only.

Chrome, Firefox, VS Code and others hand a second start over to the instance already running
and exit. When that instance is not one of envbox's launches of the same profile, a launch
would silently run nothing in the profile's environment. The profile's `single_instance`
names what the running instance holds: a lock (Chromium's SingletonLock symlink, "HOST-PID"),
a listening unix socket, a D-Bus name. The holder is "ours" when it is a process of a running
launch of this profile (inside its pid namespace, where the lock records the inner pid).
"""

from __future__ import annotations

import os

from envbox.fsio import pid_alive
from envbox.runtime import procs
from envbox.runtime.running import launch_records


def expand(path: str, environ) -> str:
    """~/ and $XDG_CONFIG_HOME/ (default ~/.config), as the profile field allows."""
    home = environ.get("HOME") or os.path.expanduser("~")
    if path.startswith("~/"):
        return os.path.join(home, path[2:])
    if path.startswith("$XDG_CONFIG_HOME/"):
        return os.path.join(environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), path[len("$XDG_CONFIG_HOME/"):])
    return path


def separated(option: str | None, args: list[str]) -> bool:
    """Does the command line choose a directory of its own (e.g. --user-data-dir=DIR)?"""
    return bool(option) and any(a == option or a.startswith(option + "=") for a in args)


def parse_lock(target: str) -> tuple[str, int] | None:
    """(host, pid) from a lock's content: Chromium's "HOST-PID", Firefox's "IP:+PID", a bare pid."""
    digits = ""
    for c in reversed(target.strip()):
        if not c.isdigit():
            break
        digits = c + digits
    if not digits or int(digits) <= 0:
        return None
    host = target.strip()[: -len(digits)].rstrip("-+:")
    return host, int(digits)


def read_lock(path: str) -> tuple[str, int, float] | None:
    """(host, pid, when written) of a lock symlink, or of a small lock file holding a pid."""
    try:
        st = os.lstat(path)
        if os.path.islink(path):
            text = os.readlink(path)
        else:
            from envbox.fsio import FileRefused, read_limited

            try:
                text = read_limited(path, limit=256)[0].decode("utf-8", "replace")
            except FileRefused:
                return None
    except OSError:
        return None
    found = parse_lock(text)
    return (found[0], found[1], st.st_mtime) if found else None


def listening(path: str) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        return True
    except (socket.timeout, BlockingIOError):
        return True  # bound, but its backlog is full: an instance that is busy
    except OSError:
        return False  # ECONNREFUSED (a stale socket file), ENOENT...
    finally:
        s.close()


def socket_owner(path: str) -> int | None:
    """A process holding the unix socket bound at path (one we can see), or None."""
    try:
        real = os.path.realpath(path)
        with open("/proc/net/unix") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    inodes = {f"socket:[{parts[6]}]" for parts in (line.split() for line in lines) if len(parts) >= 8 and parts[7] == real}
    if not inodes:
        return None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                if os.readlink(f"/proc/{name}/fd/{fd}") in inodes:
                    return int(name)
        except OSError:
            continue
    return None


def dbus_owner(name: str, environ) -> int | None:
    """The pid owning a name on the session bus (dbus-send), or None if unowned or unknown."""
    import shutil

    from envbox import helper

    tool = shutil.which("dbus-send", path=environ.get("PATH", "/usr/bin:/bin"))
    if not tool or not environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    try:
        out = helper.run(
            [tool, "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
             "org.freedesktop.DBus.GetConnectionUnixProcessID", f"string:{name}"],
            env=dict(environ), timeout_s=2, check=False,
        )
    except helper.HelperFailed:
        return None
    words = out.stdout.split()
    return int(words[-1]) if out.returncode == 0 and words and words[-1].isdigit() else None


def check(si: dict, profile: str, args: list[str], runtime_dir: str, environ) -> str | None:
    """The one-line problem (with a hint line) when the app runs outside envbox, else None."""
    option = si.get("separate_with")
    if separated(option, args):
        return None
    # Reading every process's parent costs milliseconds: only when something is held.
    cache: dict = {}

    def parents() -> dict:
        if "parents" not in cache:
            cache["parents"] = procs.proc_parents()
            cache["supervisors"] = {pid for pid, rec in launch_records(runtime_dir) if rec.get("profile") == profile} if runtime_dir else set()
        return cache["parents"]

    def ours() -> set:
        parents()
        return cache["supervisors"]

    holder = None
    if si.get("lock"):
        path = expand(si["lock"], environ)
        found = read_lock(path)
        if found:
            host, pid, written = found
            import socket

            if host and host != socket.gethostname() and not host.replace(".", "").isdigit():
                return None  # another computer's instance: the app itself says so
            inits = [i for i in (procs.find_init(parents(), sup) for sup in ours()) if i]
            if any(procs.in_namespace_of(parents(), init, pid) for init in inits) or procs.owning_launch(parents(), pid, ours()):
                return None  # held by a launch of this profile
            started = procs.started_at(pid)
            # A live process that started after the lock was written only reuses the pid.
            if pid_alive(pid) and started is not None and started <= written + 1:
                holder = (pid, path)
        if holder is None and not si.get("socket"):
            return None
    if si.get("socket"):
        path = expand(si["socket"], environ)
        if holder is not None or not si.get("lock"):
            if not listening(path):
                return None  # nothing answers: a stale lock, the app is not running
            owner = socket_owner(path)
            if owner is not None and procs.owning_launch(parents(), owner, ours()):
                return None
            if owner is None and ours() and holder is None:
                return None  # cannot tell whose, and a launch of this profile runs
            holder = holder or (owner, path)
    if holder is None and si.get("dbus"):
        pid = dbus_owner(si["dbus"], environ)
        if pid is not None and not procs.owning_launch(parents(), pid, ours()):
            holder = (pid, f"D-Bus name {si['dbus']}")
    if holder is None:
        return None
    pid, what = holder
    who = f"pid {pid}, " if pid else ""
    hint = f"close the other {profile} first"
    if option:
        hint += f", or give this one a directory of its own: envbox launch {profile} -- {option}=DIR"
    return (f"{profile} is already running outside envbox's {profile} environment ({who}{what}); "
            f"this launch would only hand over to it\nhint: {hint}; 'envbox launch --force {profile}' launches anyway")
