"""The sandbox: parse operations from argv, enter namespaces, mount overlays, exec. Stdlib only.

Runs as a file (`python3 -SI sandbox.py OPTIONS -- COMMAND...`) or in-process from the
supervisor's forked child; it imports nothing from envbox, so a launch pays only for the
interpreter and ctypes. Options are parsed into small operation values first; then a fixed
sequence runs:

    unshare (user +) mount (+ pid) namespaces -> make / private -> mount overlays
    -> [pid namespace: fork the namespace's init, which joins the cgroups, mounts /proc and
        forks the app; this process relays signals to it and passes its exit status up]
    -> chdir -> no_new_privs, parent-death signal -> reset signals -> exec

With --unshare-pid the app's whole process tree lives in its own pid namespace, so when the
init dies (because envbox was killed: parent-death signals chain down) the kernel kills every
process the app left behind; nothing outlives the launch holding files or locks.

Options (each flag on its own with its values):
    --userns                  new user namespace mapping the caller's uid/gid to themselves
    --unshare-pid             new pid namespace with a small init (fresh /proc)
    --join-cgroup FILE        write our pid to a cgroup.procs file before anything else
    --lower DIR               a lower layer for the next --overlay (top first, like lowerdir=)
    --overlay TARGET          read-only overlay of the --lower dirs over the host's TARGET
    --setenv NAME VALUE       the app's environment is exactly the --setenv variables
    --ro-bind PATH            make PATH, and every mount below it, read-only for the app (a
                              recursive bind mount of itself, made read-only recursively)
    --block-tty-inject        seccomp filter: ioctl(TIOCSTI) and ioctl(TIOCLINUX) fail with EPERM
                              (the app cannot type into the caller's terminal)
  Confinement of build-time steps (a layer's own programs run while building it):
    --unshare-net             new network namespace (no network, no abstract unix sockets)
    --ro-all                  make every mount read-only, recursively (after the overlays)
    --tmpfs PATH              a fresh empty tmpfs over PATH (after --ro-all; hides what is there)
    --bind SRC DEST           SRC writable at DEST (DEST below a --tmpfs; taken before --ro-all)
    --new-session             the app starts a new session: no controlling terminal
    --drop-to UID GID         the app runs as UID/GID without groups or capabilities (as root)
    --own-pgrp                the app gets a process group of its own (when not on a terminal)
    --wait-fd FD              the init waits for "1" on FD before starting the app (the
                              supervisor first checks limits it could only read once the
                              sandbox was running, e.g. a systemd scope's)
    --chdir DIR               working directory of the app
    --die-with-parent         SIGKILL the app when the process that started it dies
    --debug                   describe every step on stderr
"""

from __future__ import annotations

import ctypes
import errno
import os
# _signal is the C module behind `signal`; importing `signal` itself pulls in enum
# (~6 ms at start-up here), which the launch path cannot afford.
import _signal as signal
import sys

EXIT_ENVBOX, EXIT_NOEXEC, EXIT_NOTFOUND = 125, 126, 127

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
CLONE_NEWPID = 0x20000000
CLONE_NEWCGROUP = 0x02000000
CLONE_INTO_CGROUP = 0x200000000
SYS_CLONE3 = 435
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 0x20, 0x1000, 0x400, 0x800, 0x200000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
# New mount API (linux/mount.h); x86_64 and aarch64 share these numbers (asm-generic table).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 428, 429, 430, 431, 432
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 0x1, 0o2000000, 0x8000
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
MOVE_MOUNT_F_EMPTY_PATH = 0x4
SYS_MOUNT_SETATTR = 442
CLONE_NEWNET = 0x40000000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
# The caller's umask, in octal, set by envbox's entry point (main.py) for the app to get back.
APP_UMASK_VAR = "ENVBOX_APP_UMASK"
# The kernel caps an overlay at 500 lower layers (OVL_MAX_STACK).
MAX_LOWER = 500
# mount(2) copies its option string into one page; longer strings are cut, silently changing
# the last lowerdir path (a wrong directory may then be mounted), so the legacy path never
# passes one (it names layers by descriptor when their paths would not fit).
MAX_OPTIONS = 4095

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class SandboxFailure(Exception):
    def __init__(self, message: str, code: int = EXIT_ENVBOX):
        super().__init__(message)
        self.code = code


# ---- one thin wrapper per syscall: raise OSError, never return -1 --------------------------


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace an open /proc/PID/ns/* file refers to (nstype: its CLONE_NEW* flag)."""
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def fsopen(fstype: str) -> int:
    return _check(_libc.syscall(SYS_FSOPEN, _b(fstype), FSOPEN_CLOEXEC), "fsopen")


def fsconfig(fd: int, cmd: int, key: str | None, value: str | None, aux: int = 0) -> None:
    _check(_libc.syscall(SYS_FSCONFIG, fd, cmd, _b(key), _b(value), aux), f"fsconfig {key}", value)


def fsmount(fd: int, attrs: int) -> int:
    return _check(_libc.syscall(SYS_FSMOUNT, fd, FSMOUNT_CLOEXEC, attrs), "fsmount")


def move_mount(fd: int, target: str) -> None:
    _check(
        _libc.syscall(SYS_MOVE_MOUNT, fd, b"", -100, _b(target), MOVE_MOUNT_F_EMPTY_PATH),  # -100: AT_FDCWD
        "move_mount",
        target,
    )


def open_tree(path: str, flags: int) -> int:
    return _check(_libc.syscall(SYS_OPEN_TREE, -100, _b(path), flags), "open_tree", path)  # -100: AT_FDCWD


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


# PyDLL keeps the GIL across the call, as os.fork() does around fork().
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long


def fork_into_cgroup(cgroup_dir: str) -> int:
    """fork(), with the child born inside a cgroup v2 directory (clone3 CLONE_INTO_CGROUP,
    Linux 5.7): no move afterwards, so no wait for the RCU grace period a move can cost, and
    not a moment outside the limits. Raises OSError where the kernel cannot."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=fd)
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _pylibc.syscall(SYS_CLONE3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    err = ctypes.get_errno()
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    else:
        ctypes.pythonapi.PyOS_AfterFork_Parent()
    os.close(fd)
    if pid < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}", cgroup_dir)
    return pid


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), "prctl")


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def mount_setattr(path: str, flags: int, attr_set: int, attr_clr: int = 0) -> None:
    attr = _MountAttr(attr_set=attr_set, attr_clr=attr_clr)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, -100, _b(path), flags, ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr", path)


def readonly_tree(path: str) -> None:
    """Make the mount at path and every mount below it read-only (a store on its own disk, a
    bind-mounted cache: a read-only flag on the top mount alone stops at their boundary).

    mount_setattr(AT_RECURSIVE) does it in one step, also for locked mounts in a user
    namespace (setting read-only is always allowed; only clearing flags is locked). Kernels
    before 5.12 get a remount of each mount point, top first, repeating its locked flags."""
    try:
        if os.environ.get("ENVBOX_SANDBOX_NO_MOUNT_SETATTR") == "1":  # tests: the older kernels' way
            raise OSError(errno.ENOSYS, "legacy mount requested")
        mount_setattr(path, AT_RECURSIVE, MOUNT_ATTR_RDONLY)
        return
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
    for point in [path, *mounts_below(path)]:
        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(point))


# ---- operations: plain values with execute() and describe() --------------------------------


class JoinCgroup:
    def __init__(self, procs_file: str):
        self.procs_file = procs_file

    def describe(self) -> str:
        return f"join cgroup {self.procs_file}"

    def execute(self, ctx: "Context") -> None:
        # Before exec and before unsharing: the app is capped from its first instruction, and
        # the write is checked against our real credentials.
        fd = os.open(self.procs_file, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, b"0\n")
        finally:
            os.close(fd)


# Knobs that switch unprivileged user namespaces off: Debian's own patch (kernels before 6.x
# Debian builds keep it; 0 = off), the upstream per-user count, and Ubuntu's AppArmor switch.
USERNS_KNOBS = (
    ("kernel.unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"),
    ("user.max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
    ("kernel.apparmor_restrict_unprivileged_userns", "1", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
)


def _read_sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def userns_off_reason(err: int, read_sysctl) -> str | None:
    """One line (and a hint) when unshare(CLONE_NEWUSER) failed because the machine switched
    unprivileged user namespaces off, naming the knob; None for any other failure. Pure but
    for read_sysctl (name -> value or None)."""
    if err not in (errno.EPERM, errno.ENOSPC, errno.EACCES):
        return None
    for knob, off, fix in USERNS_KNOBS:
        if read_sysctl(knob) == off:
            return (f"cannot create a user namespace: unprivileged user namespaces are switched off on this machine ({knob} = {off})\n"
                    f"hint: an administrator can enable them ({fix}, and in /etc/sysctl.d to keep it), or run envbox as root")
    if err == errno.ENOSPC:
        return ("cannot create a user namespace: the per-user limit (user.max_user_namespaces) is reached\n"
                "hint: an administrator can raise it: sysctl -w user.max_user_namespaces=15000")
    return None


class Unshare:
    def __init__(self, *, userns: bool, pidns: bool = False, netns: bool = False):
        self.userns = userns
        self.pidns = pidns
        self.netns = netns

    def describe(self) -> str:
        kinds = ["user"] * self.userns + ["mount"] + ["pid"] * self.pidns + ["net"] * self.netns
        return f"unshare {'+'.join(kinds)} namespaces" + (" (uid/gid mapped to themselves)" if self.userns else "")

    def execute(self, ctx: "Context") -> None:
        uid, gid = os.getuid(), os.getgid()
        try:
            unshare(CLONE_NEWNS | (CLONE_NEWUSER if self.userns else 0) | (CLONE_NEWPID if self.pidns else 0) | (CLONE_NEWNET if self.netns else 0))
        except OSError as exc:
            why = userns_off_reason(exc.errno, _read_sysctl) if self.userns else None
            if why is None:
                raise
            raise SandboxFailure(why) from None
        if self.userns:
            # An unprivileged process may map only its own ids, and must give up setgroups(2)
            # before writing gid_map (user_namespaces(7), "Interaction with setgroups").
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
            _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
        # Every mount below must stay in this namespace: with shared propagation (systemd's
        # default for /) an overlay over /usr would appear in the host's namespace too.
        mount(None, "/", None, MS_REC | MS_PRIVATE)


class MountProc:
    def describe(self) -> str:
        return "mount a fresh /proc for the pid namespace"

    def execute(self, ctx: "Context") -> None:
        # The host's /proc would show host pids: /proc/<getpid()> would be some other process.
        # In a mount namespace of the init's own, so the process that started it (outside the
        # pid namespace) keeps a /proc that shows itself.
        unshare(CLONE_NEWNS)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


class ReadOnly:
    def __init__(self, path: str):
        self.path = path

    def describe(self) -> str:
        return f"read-only {self.path}"

    def execute(self, ctx: "Context") -> None:
        # Missing paths are skipped: there is nothing there for the app to change.
        if not os.path.lexists(self.path) or os.path.islink(self.path):
            return
        mount(self.path, self.path, None, MS_BIND | MS_REC)
        # Every mount of the recursive bind, not only the top one: a separate file system
        # below PATH would otherwise stay writable.
        readonly_tree(self.path)


class ReadOnlyAll:
    def describe(self) -> str:
        return "read-only / and every mount below it"

    def execute(self, ctx: "Context") -> None:
        readonly_tree("/")


class Tmpfs:
    def __init__(self, path: str):
        self.path = path

    def describe(self) -> str:
        return f"empty tmpfs over {self.path}"

    def execute(self, ctx: "Context") -> None:
        # A path hidden by an earlier tmpfs (HOME below /tmp) is hidden already.
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            mount("tmpfs", self.path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")


class BindTake:
    """The first half of --bind: a detached copy of SRC, taken while SRC is still writable and
    visible (before --ro-all and the tmpfs mounts)."""

    def __init__(self, source: str, dest: str):
        self.source, self.dest = source, dest

    def describe(self) -> str:
        return f"take {self.source} for a writable bind at {self.dest}"

    def execute(self, ctx: "Context") -> None:
        ctx.binds[self.dest] = open_tree(self.source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)


class BindPut:
    def __init__(self, source: str, dest: str):
        self.source, self.dest = source, dest

    def describe(self) -> str:
        return f"writable bind {self.source} at {self.dest}"

    def execute(self, ctx: "Context") -> None:
        fd = ctx.binds.pop(self.dest)
        try:
            os.makedirs(self.dest, exist_ok=True)
            move_mount(fd, self.dest)
        finally:
            os.close(fd)


def _locked_flags(path: str) -> int:
    st = os.statvfs(path)
    flags = 0
    for bit, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                    (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if st.f_flag & bit:
            flags |= ms
    return flags


class Overlay:
    def __init__(self, target: str, lowers: tuple[str, ...]):
        self.target = target
        self.lowers = lowers  # top first, as in lowerdir=; the host's target goes below them all

    def describe(self) -> str:
        return f"overlay {self.target} = " + " over ".join(self.lowers + (f"{self.target} (host)",))

    def execute(self, ctx: "Context") -> None:
        layers = self.lowers + (self.target,)
        if len(layers) > MAX_LOWER:
            raise SandboxFailure(f"{len(layers)} layers over {self.target}; the kernel allows at most {MAX_LOWER}")
        # The overlay would hide every mount below the target (a separate /usr/local, files
        # bind-mounted into /etc by a container runtime): take detached copies first and put
        # them back on top.
        kept = [(path, open_tree(path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)) for path in submounts(self.target)]
        try:
            try:
                if ctx.forced_legacy:  # ENVBOX_SANDBOX_LEGACY_MOUNT=1: the pre-6.8 path, for tests
                    raise OSError(errno.ENOSYS, "legacy mount requested")
                self._mount_fsconfig(layers, userns=ctx.userns)
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EINVAL):
                    raise
                # lowerdir+ appeared in Linux 6.8; older kernels take one option string.
                self._mount_legacy(layers, userns=ctx.userns)
            for path, fd in kept:
                move_mount(fd, path)
        finally:
            for _, fd in kept:
                os.close(fd)

    def _mount_fsconfig(self, layers: tuple[str, ...], *, userns: bool) -> None:
        fd = fsopen("overlay")
        try:
            # Each lower layer is its own parameter: no page-size limit on the total, no
            # escaping of ':' or ',' in paths.
            for layer in layers:
                fsconfig(fd, FSCONFIG_SET_STRING, "lowerdir+", layer)
            if userns:
                # In a user namespace overlayfs cannot read trusted.* xattrs; whiteouts and
                # opaque dirs are read from user.overlay.* instead.
                fsconfig(fd, FSCONFIG_SET_FLAG, "userxattr", None)
            fsconfig(fd, FSCONFIG_CMD_CREATE, None, None)
            mfd = fsmount(fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
        finally:
            os.close(fd)
        try:
            move_mount(mfd, self.target)
        finally:
            os.close(mfd)

    def _mount_legacy(self, layers: tuple[str, ...], *, userns: bool) -> None:
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV
        extra = ",userxattr" if userns else ""
        options = "lowerdir=" + ":".join(layers) + extra
        if len(options) <= MAX_OPTIONS and not any(c in layer for layer in layers for c in ":,\\"):
            mount("overlay", self.target, "overlay", flags, options)
            return
        # Store paths are ~110 bytes, so ~35 of them fill mount(2)'s one page, and ':' ',' '\'
        # cannot be carried at all: name each layer by a descriptor instead, relative to
        # /proc/self/fd ("7:8:9"), which the kernel resolves when it parses the options.
        fds = [os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for layer in layers]
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            options = "lowerdir=" + ":".join(map(str, fds)) + extra
            if len(options) > MAX_OPTIONS:
                raise SandboxFailure(f"overlay options for {self.target} are {len(options)} bytes; mount(2) takes at most {MAX_OPTIONS}")
            os.chdir("/proc/self/fd")
            try:
                mount("overlay", self.target, "overlay", flags, options)
            finally:
                os.fchdir(cwd)
        finally:
            for fd in (*fds, cwd):
                os.close(fd)


def submounts(target: str, mountinfo: str = "/proc/self/mountinfo") -> list:
    """The outermost mount points strictly below target (nested ones travel with them)."""
    with open(mountinfo, "rb") as f:
        points = [_unescape(line.split(b" ")[4]) for line in f.read().splitlines() if line]
    below = sorted({p for p in points if p.startswith(target.rstrip("/") + "/")})
    outer: list = []
    for p in below:
        if not any(p.startswith(o + "/") for o in outer):
            outer.append(p)
    return outer


def mounts_below(target: str, mountinfo: str = "/proc/self/mountinfo") -> list:
    """Every mount point strictly below target, outermost first."""
    with open(mountinfo, "rb") as f:
        points = [_unescape(line.split(b" ")[4]) for line in f.read().splitlines() if line]
    prefix = target.rstrip("/") + "/"
    return sorted({p for p in points if p.startswith(prefix)}, key=lambda p: (p.count("/"), p))


def _unescape(field: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo (proc(5))."""
    out, i = bytearray(), 0
    while i < len(field):
        if field[i] == 0x5C and i + 3 < len(field) + 0 and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


class Context:
    def __init__(self) -> None:
        self.userns = False
        self.pidns = False
        self.env: dict[str, str] = {}
        self.chdir: str | None = None
        self.die_with_parent = False
        self.wait_fd: int | None = None
        self.own_pgrp = False
        self.close_fds: list[int] = []  # closed just before exec: the app was given them closed
        self.debug = False
        self.forced_legacy = os.environ.get("ENVBOX_SANDBOX_LEGACY_MOUNT") == "1"
        self.netns = False
        self.block_tty_inject = False
        self.new_session = False
        self.drop_to: tuple[int, int] | None = None
        self.binds: dict[str, int] = {}  # dest -> detached tree (BindTake -> BindPut)
        self.ops: list = []  # run by this process
        self.init_ops: list = []  # run by the pid namespace's init (empty without --unshare-pid)
        self.argv: list[str] = []


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# ---- parse ----------------------------------------------------------------------------------


def parse(argv: list[str]) -> Context:
    """argv -> Context with operations in execution order. Pure."""
    ctx = Context()
    joins, overlays, lowers, readonly = [], [], [], []
    ro_all, tmpfs, binds = [], [], []
    i = 0

    def take(n: int) -> list[str]:
        nonlocal i
        if i + n > len(argv):
            raise SandboxFailure(f"sandbox option {argv[i - 1]} needs {n} value(s)")
        values = argv[i : i + n]
        i += n
        return values

    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            ctx.argv = argv[i:]
            break
        if arg == "--userns":
            ctx.userns = True
        elif arg == "--unshare-pid":
            ctx.pidns = True
        elif arg == "--join-cgroup":
            joins.append(JoinCgroup(take(1)[0]))
        elif arg == "--lower":
            lowers.append(take(1)[0])
        elif arg == "--overlay":
            overlays.append(Overlay(take(1)[0], tuple(lowers)))
            lowers = []
        elif arg == "--setenv":
            name, value = take(2)
            ctx.env[name] = value
        elif arg == "--ro-bind":
            readonly.append(ReadOnly(take(1)[0]))
        elif arg == "--block-tty-inject":
            ctx.block_tty_inject = True
        elif arg == "--unshare-net":
            ctx.netns = True
        elif arg == "--ro-all":
            ro_all = [ReadOnlyAll()]
        elif arg == "--tmpfs":
            tmpfs.append(Tmpfs(take(1)[0]))
        elif arg == "--bind":
            binds.append(tuple(take(2)))
        elif arg == "--new-session":
            ctx.new_session = True
        elif arg == "--drop-to":
            try:
                uid, gid = (int(v) for v in take(2))
            except ValueError:
                raise SandboxFailure("--drop-to needs a numeric uid and gid") from None
            ctx.drop_to = (uid, gid)
        elif arg == "--own-pgrp":
            ctx.own_pgrp = True
        elif arg == "--wait-fd":
            try:
                ctx.wait_fd = int(take(1)[0])
            except ValueError:
                raise SandboxFailure("--wait-fd needs a file descriptor number") from None
        elif arg == "--close-fd":
            value = take(1)[0]
            if value not in ("0", "1", "2"):
                raise SandboxFailure(f"--close-fd takes 0, 1 or 2, not {value!r}")
            ctx.close_fds.append(int(value))
        elif arg == "--chdir":
            ctx.chdir = take(1)[0]
        elif arg == "--die-with-parent":
            ctx.die_with_parent = True
        elif arg == "--debug":
            ctx.debug = True
        else:
            raise SandboxFailure(f"unknown sandbox option {arg!r}")
    if lowers:
        raise SandboxFailure("--lower without a following --overlay")
    if not ctx.argv:
        raise SandboxFailure("no command given after --")
    unshare = Unshare(userns=ctx.userns, pidns=ctx.pidns, netns=ctx.netns)
    # Overlays first (their lower dirs must still be visible), then the writable binds are
    # taken, everything turns read-only, the tmpfs mounts hide what they cover, and the binds
    # go back on top of them.
    mounts = [*overlays, *(BindTake(*b) for b in binds), *ro_all, *tmpfs, *(BindPut(*b) for b in binds), *readonly]
    if ctx.pidns:
        # The cgroups are joined by the init, not by this process: it only relays signals,
        # and must not count against (or be killed by) the app's limits.
        ctx.ops = [unshare, *mounts]
        ctx.init_ops = [*joins, MountProc()]
    else:
        ctx.ops = [*joins, unshare, *mounts]
    return ctx


# ---- run ------------------------------------------------------------------------------------



def find_program(name: str, path_var: str) -> str:
    """execvp's search, done up front so 'not found' and 'not executable' get their own codes."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in path_var.split(":")]
    denied = None
    for candidate in candidates:
        if os.path.isdir(candidate):
            denied = denied or candidate
            continue
        if os.access(candidate, os.X_OK):
            return candidate
        if os.path.exists(candidate):
            denied = denied or candidate
    if denied:
        raise SandboxFailure(f"{name}: permission denied (not executable)", EXIT_NOEXEC)
    raise SandboxFailure(f"{name}: command not found\nhint: install it on the host, or add a tool that provides it (searched {path_var})", EXIT_NOTFOUND)


def _run_ops(ctx: Context, ops: list) -> None:
    for op in ops:
        if ctx.debug:
            print(f"envbox-sandbox: {op.describe()}", file=sys.stderr)
        try:
            op.execute(ctx)
        except OSError as exc:
            raise SandboxFailure(f"{op.describe()}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")) from None


def execute(ctx: Context) -> int:
    """Run the operations and the command. Execs, or (pid namespace) returns the exit code."""
    if not ctx.pidns:
        cwd = ctx.chdir or os.getcwd()
        _run_ops(ctx, ctx.ops)
        return _exec_app(ctx, cwd)
    if ctx.die_with_parent:  # standalone: die with whoever started the sandbox command
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    watched = block_signals()
    return exit_code(wait_forwarding(start(ctx), watched))


def start(ctx: Context) -> int:
    """Set up the namespaces and mounts in this process, fork the pid namespace's init and
    return its pid. The caller blocked the forwarded signals (block_signals) and now relays
    them (wait_forwarding): the standalone sandbox, or envbox's supervisor in-process (one
    process fewer per launch). This process stays outside the pid namespace and its cgroup."""
    cwd = ctx.chdir or os.getcwd()
    _run_ops(ctx, ctx.ops)
    # The init learns that we died before its prctl(PDEATHSIG) took effect from this pipe:
    # its write end closes with us (getppid() cannot tell: our pid is not in its namespace).
    alive_r, alive_w = os.pipe()
    init = _fork_init(ctx)
    if init == 0:
        code = EXIT_ENVBOX
        try:
            os.close(alive_w)
            code = _init(ctx, cwd, alive_r)
        except BaseException as exc:  # never unwind into the caller's code in the child
            print(f"envbox: init: {exc}", file=sys.stderr)
        _exit_with(code)
    os.close(alive_r)
    _KEEP.append(alive_w)  # open, and close-on-exec, for as long as this process lives
    return init


_KEEP: list = []


def _fork_init(ctx: Context) -> int:
    """Fork the init; on cgroup v2 straight into the launch's cgroup when the kernel can."""
    joins = [op for op in ctx.init_ops if isinstance(op, JoinCgroup)]
    target = os.path.dirname(joins[0].procs_file) if len(joins) == 1 else None
    if target and os.path.exists(os.path.join(target, "cgroup.controllers")):  # a v2 directory
        try:
            pid = fork_into_cgroup(target)
        except OSError:
            pid = None  # older kernel or no permission: fork, and the init joins by writing
        if pid is not None:
            if pid == 0:
                ctx.init_ops = [op for op in ctx.init_ops if not isinstance(op, JoinCgroup)]
            return pid
    return os.fork()


def _init(ctx: Context, cwd: str, alive_r: int) -> int:
    """Pid 1 of the namespace: set up, fork the app, pass signals on, reap orphans."""
    try:
        # Dies with the process that started it; the kernel then kills the whole namespace.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        import select

        if select.select([alive_r], [], [], 0)[0]:  # EOF: the parent died before the prctl
            return EXIT_ENVBOX
        os.close(alive_r)
        watched = set(FORWARD) | {signal.SIGRTMIN + sig for sig in FORWARD} | {signal.SIGCHLD}  # still blocked
        _run_ops(ctx, ctx.init_ops)
        if ctx.wait_fd is not None:
            word = os.read(ctx.wait_fd, 1)
            os.close(ctx.wait_fd)  # not the app's to inherit
            if word != b"1":
                return EXIT_ENVBOX  # the supervisor refused (and said why); the app never starts
        if ctx.own_pgrp:
            os.setpgid(0, 0)
        app = os.fork()
        if app == 0:
            _exit_with(_exec_app(ctx, cwd))
    except SandboxFailure as exc:
        print(f"envbox: {exc}", file=sys.stderr)
        return exc.code
    return exit_code(wait_forwarding(app, watched, reap_all=True))


def _exit_with(code: int) -> None:
    sys.stdout.flush()
    os._exit(code)


def restore_app_umask() -> None:
    """envbox works under a umask that keeps its own files private (main.py); the app gets the
    caller's own back."""
    umask = os.environ.get(APP_UMASK_VAR, "")
    if umask.isdigit():
        os.umask(int(umask, 8) & 0o777)


def _exec_app(ctx: Context, cwd: str) -> int:
    """Exec the app; returns an exit code only when that fails."""
    try:
        try:
            # Re-enter the directory by path: if it is below /usr we now see the overlay's copy.
            os.chdir(cwd)
        except OSError as exc:
            # Never fall back to another directory: `rm -rf *` in the wrong place is worse.
            raise SandboxFailure(f"cannot enter the working directory {cwd} in the sandbox: {exc.strerror}\nhint: the directory is below a path the layers replace, or was removed; cd elsewhere") from None
        if ctx.new_session:
            os.setsid()  # no controlling terminal: nothing to type into, no terminal signals
        if ctx.drop_to is not None and os.geteuid() == 0:
            uid, gid = ctx.drop_to
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)  # from root to another uid: every capability goes
        if ctx.die_with_parent:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # No setuid/file-capability gains from here on (prctl(2)); inherited across fork and exec.
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if ctx.block_tty_inject:
            install_tty_filter()
        program = find_program(ctx.argv[0], ctx.env.get("PATH", "/usr/bin:/bin"))
        restore_app_umask()
        # Whoever started us blocked signals to forward them; the app starts with a clean slate,
        # except that what the caller ignored stays ignored (nohup, background jobs): only the
        # handlers Python itself installed (SIGINT) or the ignores it set (SIGPIPE, SIGXFSZ) go.
        for sig in RESET_FOR_APP:
            if sig in (signal.SIGPIPE, signal.SIGXFSZ) or signal.getsignal(sig) not in (signal.SIG_IGN, signal.SIG_DFL, None):
                signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _close_std(ctx.close_fds)
        try:
            os.execve(program, ctx.argv, ctx.env)
        except OSError as exc:
            if exc.errno == errno.ENOEXEC:
                # A script without #!: run it with /bin/sh, as execvp(3) and shells do.
                try:
                    os.execve("/bin/sh", ["/bin/sh", program, *ctx.argv[1:]], ctx.env)
                except OSError:
                    pass
            _null_std(ctx.close_fds)  # /dev/null again, so the message below can be written
            code = EXIT_NOTFOUND if exc.errno == errno.ENOENT else EXIT_NOEXEC
            raise SandboxFailure(f"{ctx.argv[0]}: {exc.strerror}", code) from None
    except SandboxFailure as exc:
        print(f"envbox: {exc}", file=sys.stderr)
        return exc.code
    return EXIT_ENVBOX


def _close_std(fds: list) -> None:
    """Close the standard fds envbox itself was started without (it ran with /dev/null on
    them): the app gets exactly the streams its caller gave, a closed one included."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _null_std(fds: list) -> None:
    for fd in sorted(fds):
        null = os.open("/dev/null", os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


# ---- seccomp: no typing into the caller's terminal --------------------------------------------

# ioctl(TIOCSTI) pushes bytes into a terminal's input queue, as if typed: an app keeping the
# caller's terminal could queue a command that the shell runs after the app exits. TIOCLINUX
# (the virtual console's selection paste) does the same. Both fail with EPERM under the filter;
# everything else, job control included (TIOCSPGRP, TIOCGWINSZ...), is untouched.
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 = 0xC000003E, 0x40000003
AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM = 0xC00000B7, 0x40000028
X32_SYSCALL_BIT = 0x40000000
# The ioctl syscall's number for each ABI a process on this machine can use: x86_64 also runs
# i386 (int 0x80) and x32 code, aarch64 also 32-bit arm code; each must be filtered or it is a
# way around the filter.
IOCTL_NR = {
    "x86_64": ((AUDIT_ARCH_X86_64, (16, X32_SYSCALL_BIT | 16, X32_SYSCALL_BIT | 514)), (AUDIT_ARCH_I386, (54,))),
    "aarch64": ((AUDIT_ARCH_AARCH64, (29,)), (AUDIT_ARCH_ARM, (54,))),
}
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]. The request is
# args[1]; the kernel uses only its low 32 bits (unsigned int cmd), so only those are compared:
# matching all 64 would let TIOCSTI | 1 << 32 through (CVE-2019-10063, Flatpak).
_OFF_NR, _OFF_ARCH, _OFF_ARG1_LOW = 0, 4, 16 + 8 if sys.byteorder == "little" else 16 + 8 + 4


def tty_filter_program(machine: str) -> bytes:
    """The classic BPF program (struct sock_filter[]) of the filter, for machine. Pure."""
    import struct

    arches = IOCTL_NR.get(machine)
    if arches is None:
        raise SandboxFailure(f"no seccomp filter for TIOCSTI on {machine} (known: {', '.join(IOCTL_NR)})")
    prog: list = []  # (code, jt, jf, k) with jt/jf as label names or 0

    def op(code, k, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    for i, (arch, numbers) in enumerate(arches):
        prog.append(f"arch{i}")
        op(_BPF_LD_W_ABS, _OFF_ARCH)
        op(_BPF_JEQ_K, arch, 0, f"arch{i + 1}")
        op(_BPF_LD_W_ABS, _OFF_NR)
        for nr in numbers:
            op(_BPF_JEQ_K, nr, "check", 0)
        op(_BPF_RET_K, SECCOMP_RET_ALLOW)
        prog.append(f"arch{i + 1}")
    op(_BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM)  # an ABI this machine does not have
    prog.append("check")
    op(_BPF_LD_W_ABS, _OFF_ARG1_LOW)
    op(_BPF_JEQ_K, TIOCSTI, "deny", 0)
    op(_BPF_JEQ_K, TIOCLINUX, "deny", 0)
    op(_BPF_RET_K, SECCOMP_RET_ALLOW)
    prog.append("deny")
    op(_BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM)
    # Resolve labels into the relative forward jumps BPF takes.
    labels, code = {}, []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    out = b""
    for index, (opcode, jt, jf, k) in enumerate(code):
        jt = labels[jt] - index - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - index - 1 if isinstance(jf, str) else jf
        out += struct.pack("=HBBI", opcode, jt, jf, k)
    return out


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_tty_filter() -> None:
    """Install the filter on this thread (after PR_SET_NO_NEW_PRIVS); kept across exec."""
    program = tty_filter_program(os.uname().machine)
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    try:
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "prctl(PR_SET_SECCOMP)")
    except OSError as exc:
        raise SandboxFailure(f"cannot install the seccomp filter against terminal injection: {exc.strerror}") from None


# ---- waiting and forwarding (used by the supervisor, the relay and the init) ---------------

# Signals sent by another process are passed on, so that the app gets each exactly once:
# - the terminal's (Ctrl-C, Ctrl-\, SIGWINCH; si_code SI_KERNEL) already reach the app directly,
#   since it stays in the terminal's foreground process group: never forwarded;
# - off a terminal the app gets a process group of its own (--own-pgrp), so a kill aimed at
#   the caller's whole group (timeout(1), a script's job control) reaches envbox, not the app;
# - signals from processes are passed down the chain as SIGRTMIN+N ("forwarded N"), and only
#   the init turns them back into N for the app; a plain N reaching the init is ignored.
FORWARD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM)
# What the app gets back to default before exec: the signals we touched (blocked, handled) and
# the two Python ignores at start-up.
RESET_FOR_APP = (*FORWARD, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ)
# si_code of signals sent by a process: SI_USER (kill), SI_QUEUE (sigqueue), SI_TKILL (tgkill);
# the terminal's come with SI_KERNEL.
_FROM_PROCESS = {0, -1, -6}


def block_signals() -> set:
    """Block the forwarded signals, their relayed forms and SIGCHLD (before fork, so none is
    lost); return the set."""
    watched = set(FORWARD) | {signal.SIGRTMIN + sig for sig in FORWARD} | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    return watched





def wait_forwarding(pid: int, watched: set, *, reap_all: bool = False) -> int:
    """Forward signals from other processes to pid until it exits; return its wait status.

    With reap_all (a pid namespace's init), every child is reaped, since orphans are ours."""
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo == signal.SIGCHLD:
            while True:
                try:
                    done, status = os.waitpid(-1 if reap_all else pid, os.WNOHANG)
                except ChildProcessError:
                    return 0
                if done == 0:
                    break
                if done == pid:
                    return status
        else:
            if info.si_signo >= signal.SIGRTMIN:
                # From the forwarder before us: the init delivers it, others pass it on.
                out = info.si_signo - signal.SIGRTMIN if reap_all else info.si_signo
            elif info.si_code in _FROM_PROCESS and not reap_all:
                out = signal.SIGRTMIN + info.si_signo
            else:
                continue
            try:
                os.kill(pid, out)
            except ProcessLookupError:
                pass


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128+N for signal N."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return EXIT_ENVBOX


def main(argv: list[str]) -> int:
    try:
        return execute(parse(argv))
    except SandboxFailure as exc:
        print(f"envbox: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
