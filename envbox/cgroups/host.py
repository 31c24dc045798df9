"""Host cgroup facts, read once: mounted hierarchies, this process's cgroups, uid, systemd."""

from __future__ import annotations

import os
from envbox.core.frozen import frozen
from collections.abc import Mapping

# The v1 controllers envbox puts a launch into: three that limit, and cpuacct, which only
# counts (on v1 it is where CPU time is read; it is often co-mounted with cpu).
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")


@frozen
class Hierarchy:
    """One mounted cgroup hierarchy and where this process sits in it."""

    version: int  # 1 or 2
    controllers: tuple[str, ...]  # v1: bound to the mount; v2: the root's cgroup.controllers
    mount: str  # the mount point
    current: str  # this process's cgroup, as /proc/self/cgroup names it
    dir: str | None  # that cgroup's directory; None when it lies outside the mount
    writable: bool  # uid may create child cgroups in dir


@frozen
class HostCgroups:
    """Everything choose_backend needs to know about the host; built by probe()."""

    uid: int
    v1: tuple[Hierarchy, ...] = ()
    v2: Hierarchy | None = None
    # Deepest ancestor of this process's v2 cgroup (itself included) that hands controllers
    # to its children (non-empty cgroup.subtree_control) and that uid may write: the root,
    # or a subtree delegated to the user. None when there is none.
    v2_base: str | None = None
    v2_base_controllers: tuple[str, ...] = ()
    v1_swap: bool = False  # memory.memsw.* exist (swap accounting on)
    v2_swap: bool | None = None  # memory.swap.max exists; None: could not tell
    memory_use_hierarchy: bool | None = None  # v1 memory.use_hierarchy of this process's cgroup
    systemd: str = ""  # "system" or "user": a manager we can ask for a scope; "" none
    systemd_root: str | None = None  # the manager's cgroup directory (envbox.slice goes below)
    systemd_controllers: tuple[str, ...] = ()  # controllers that manager can hand to envbox.slice

    def v1_for(self, controller: str) -> Hierarchy | None:
        return next((h for h in self.v1 if controller in h.controllers), None)


@frozen
class Mount:
    fstype: str  # "cgroup" (v1) or "cgroup2"
    root: str  # the cgroup shown at the mount point (not "/" inside a cgroup namespace)
    point: str
    options: frozenset[str]  # super options: v1 controllers, name=..., rw/ro
    read_only: bool


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """The cgroup mounts of a /proc/PID/mountinfo text (proc(5) describes the fields)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        super_opts = frozenset(tail[2].split(","))
        read_only = "ro" in fields[5].split(",") or "ro" in super_opts
        mounts.append(Mount(tail[0], _unescape(fields[3]), _unescape(fields[4]), super_opts, read_only))
    return tuple(mounts)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def parse_proc_cgroup(text: str) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(hierarchy id, controllers, path) per line of /proc/PID/cgroup (cgroups(7))."""
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            controllers = tuple(c for c in parts[1].split(",") if c)
            entries.append((parts[0], controllers, parts[2].removesuffix(" (deleted)")))
    return tuple(entries)


def cgroup_dir(mount: Mount, cgroup: str) -> str | None:
    """The directory of cgroup `cgroup` under this mount, or None if the mount does not show it."""
    root = mount.root.rstrip("/") or "/"
    if os.path.commonpath([root, cgroup]) != root:
        return None
    rel = os.path.relpath(cgroup, root)
    return mount.point if rel == "." else os.path.join(mount.point, rel)


def _words(path: str) -> tuple[str, ...]:
    try:
        with open(path) as f:
            return tuple(f.read().split())
    except OSError:
        return ()


def writable(path: str, uid: int) -> bool:
    """Whether uid may write path: root may; a user must own it (that is how cgroup2
    delegation is expressed, see Documentation/admin-guide/cgroup-v2.rst "Delegation")."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return uid == 0 or (st.st_uid == uid and bool(st.st_mode & 0o200))


def _hierarchy(version: int, controllers: tuple[str, ...], mount: Mount, current: str, uid: int) -> Hierarchy:
    path = cgroup_dir(mount, current)
    ok = path is not None and not mount.read_only and writable(path, uid)
    return Hierarchy(version, controllers, mount.point, current, path, ok)


def _v1_hierarchies(mounts, entries, uid: int) -> tuple[Hierarchy, ...]:
    found = []
    for _, controllers, path in entries:
        if not set(controllers) & set(V1_CONTROLLERS):
            continue  # v2 (id 0, no controllers) and named hierarchies such as name=systemd
        mount = next((m for m in mounts if m.fstype == "cgroup" and set(controllers) <= m.options), None)
        if mount is not None:
            found.append(_hierarchy(1, controllers, mount, path, uid))
    return tuple(found)


def _v2_hierarchy(mounts, entries, uid: int) -> Hierarchy | None:
    path = next((p for hid, ctrls, p in entries if hid == "0" and not ctrls), None)
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if path is None or mount is None:
        return None
    controllers = _words(os.path.join(mount.point, "cgroup.controllers"))
    return _hierarchy(2, controllers, mount, path, uid)


def _v2_base(v2: Hierarchy, uid: int, *, read_only: bool) -> tuple[str | None, tuple[str, ...]]:
    # Walk up from our own cgroup. A cgroup that enables controllers for its children has no
    # processes of its own (the "no internal processes" rule), so children can be made there;
    # for a user, moving a process between two cgroups also needs write access to the
    # cgroup.procs of their common ancestor, which is this base.
    if v2.dir is None or read_only:
        return None, ()
    path = v2.dir
    while True:
        enabled = _words(os.path.join(path, "cgroup.subtree_control"))
        delegated = writable(path, uid) and writable(os.path.join(path, "cgroup.procs"), uid)
        if set(enabled) & set(V2_CONTROLLERS) and delegated:
            return path, enabled
        if path == v2.mount or os.path.dirname(path) == path:
            return None, ()
        path = os.path.dirname(path)


def _v2_swap(v2: Hierarchy, base: str | None) -> bool | None:
    # memory.swap.max exists only in non-root cgroups that have the memory controller, and
    # only when the kernel accounts swap (CONFIG_MEMCG_SWAP, not swapaccount=0).
    for path in (v2.dir, base):
        if path and path != v2.mount and "memory" in _words(os.path.join(path, "cgroup.controllers")):
            return os.path.exists(os.path.join(path, "memory.swap.max"))
    return None


def _systemd(v2: Hierarchy | None, mounts, uid: int, environ: Mapping[str, str], systemd_dir: str):
    if v2 is None:
        return "", None, ()
    mount = next(m for m in mounts if m.fstype == "cgroup2")
    if uid == 0:
        # sd_booted(): /run/systemd/system exists only while systemd is PID 1's manager.
        if not os.path.isdir(systemd_dir):
            return "", None, ()
        kind, root = "system", cgroup_dir(mount, "/")
    else:
        runtime = environ.get("XDG_RUNTIME_DIR", "")
        if not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
            return "", None, ()
        kind, root = "user", cgroup_dir(mount, _user_manager_cgroup(v2.current, uid))
    if root is None:
        return "", None, ()
    return kind, root, _words(os.path.join(root, "cgroup.subtree_control"))


def _user_manager_cgroup(current: str, uid: int) -> str:
    unit = f"user@{uid}.service"
    parts = current.split("/")
    if unit in parts:
        return "/".join(parts[: parts.index(unit) + 1])
    return f"/user.slice/user-{uid}.slice/{unit}"


def probe(
    proc_self_cgroup: str = "/proc/self/cgroup",
    mountinfo: str = "/proc/self/mountinfo",
    *,
    uid: int | None = None,
    environ: Mapping[str, str] | None = None,
    systemd_dir: str = "/run/systemd/system",
) -> HostCgroups:
    """Read the host's cgroup layout (a few small files; cheap enough for every launch)."""
    uid = os.geteuid() if uid is None else uid
    environ = os.environ if environ is None else environ
    try:
        with open(proc_self_cgroup) as f:
            entries = parse_proc_cgroup(f.read())
        with open(mountinfo) as f:
            mounts = parse_mountinfo(f.read())
    except FileNotFoundError:
        return HostCgroups(uid=uid)
    v1 = _v1_hierarchies(mounts, entries, uid)
    v2 = _v2_hierarchy(mounts, entries, uid)
    v2_read_only = next((m.read_only for m in mounts if m.fstype == "cgroup2"), True)
    limiting = v2 is not None and bool(set(v2.controllers) & set(V2_CONTROLLERS))
    base, base_controllers = _v2_base(v2, uid, read_only=v2_read_only) if limiting else (None, ())
    memory = next((h for h in v1 if "memory" in h.controllers and h.dir), None)
    kind, sd_root, sd_controllers = _systemd(v2, mounts, uid, environ, systemd_dir)
    return HostCgroups(
        uid=uid,
        v1=v1,
        v2=v2,
        v2_base=base,
        v2_base_controllers=base_controllers,
        v1_swap=bool(memory) and os.path.exists(os.path.join(memory.dir, "memory.memsw.limit_in_bytes")),
        v2_swap=_v2_swap(v2, base) if limiting else None,
        memory_use_hierarchy=_use_hierarchy(memory),
        systemd=kind,
        systemd_root=sd_root,
        systemd_controllers=sd_controllers,
    )


def _use_hierarchy(memory: Hierarchy | None) -> bool | None:
    # v1 memory.use_hierarchy=0 would let a child's charges escape this cgroup's accounting
    # and limit. Kernels since 5.14 fix it at 1 (Documentation/admin-guide/cgroup-v1/memory.rst).
    if memory is None:
        return None
    words = _words(os.path.join(memory.dir, "memory.use_hierarchy"))
    return None if not words else words[0] == "1"
