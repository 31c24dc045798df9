"""`envbox enter`: a command inside a running launch's namespaces, cgroup and environment.

The launch's init (pid 1 of its pid namespace, a descendant of the supervisor recorded in the
runtime dir) holds everything the app sees: the user namespace (rootless launches), the
mount namespace with the layers over /usr and a /proc of the pid namespace, and the pid
namespace itself. A forked child joins those with setns(2) (user first: only inside it do
we hold the capabilities the other joins need), then forks the command, which is the first
process born in the pid namespace; it joins the launch's cgroups through files opened before
any setns (so they are checked against our real credentials), takes the app's environment
and working directory and execs. Stdlib (and sandbox.py's syscall wrappers) only.
"""

from __future__ import annotations

import os
import sys

from envbox.core.errors import EXIT_ENVBOX, EnvboxError
from envbox.runtime import sandbox
from envbox.runtime.procs import children, find_init, owning_launch, proc_parents

# (name in /proc/PID/ns, setns flag) in the order they must be joined.
NAMESPACES = (("user", sandbox.CLONE_NEWUSER), ("cgroup", sandbox.CLONE_NEWCGROUP),
              ("mnt", sandbox.CLONE_NEWNS), ("pid", sandbox.CLONE_NEWPID))


def pick(records: list[tuple[int, dict]], target: str, parents: dict[int, int]) -> tuple[int, dict]:
    """The launch a NAME (a profile with one running launch) or a PID (the supervisor's, the
    app's or any process of the launch) means; refuses anything else in one line."""
    by_pid = dict(records)
    if target.isdigit():
        pid = int(target)
        if pid not in parents:
            raise EnvboxError(f"no process {pid}", "run 'envbox ps' for the running launches and how to enter each")
        owner = owning_launch(parents, pid, set(by_pid))
        if owner is None:
            raise EnvboxError(f"process {pid} is not an envbox launch of yours; not entering it", "run 'envbox ps' for the running launches and how to enter each")
        return owner, by_pid[owner]
    found = [(pid, rec) for pid, rec in records if rec.get("profile") == target]
    if not found:
        raise EnvboxError(f"no running launch of {target!r}", f"start it with 'envbox launch {target}'; 'envbox ps' lists the running ones")
    if len(found) > 1:
        pids = ", ".join(str(pid) for pid, _ in found)
        raise EnvboxError(f"{len(found)} launches of {target} are running (pids {pids})", "say which: envbox enter PID")
    return found[0]


def read_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        data = f.read()
    env = {}
    for item in data.split(b"\0"):
        name, eq, value = item.partition(b"=")
        if eq and name:
            env[os.fsdecode(name)] = os.fsdecode(value)
    return env


class Target:
    """What entering needs, gathered (and namespaces opened) before anything is joined."""

    def __init__(self, supervisor: int, record: dict, parents: dict[int, int]):
        self.supervisor = supervisor
        self.profile = record.get("profile", "?")
        init = find_init(parents, supervisor)
        if init is None:
            raise EnvboxError(f"the launch of {self.profile} (pid {supervisor}) has no running app", "it is starting or exiting; try again")
        self.init = init
        kids = children(parents, init)
        self.app = kids[0] if kids else init
        try:
            self.env = read_environ(self.app)
            self.cwd = os.readlink(f"/proc/{self.app}/cwd")
        except OSError as exc:
            raise EnvboxError(f"cannot read the app of {self.profile} (pid {self.app}): {exc.strerror}", "enter as the user who launched it") from None
        self.ns_fds: list[tuple[int, int]] = []
        self.cgroup_fds: list[int] = []
        self.terminal = False  # whether the command takes over the caller's terminal
        try:
            for kind, flag in NAMESPACES:
                theirs = os.stat(f"/proc/{init}/ns/{kind}")
                ours = os.stat(f"/proc/self/ns/{kind}")
                if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
                    self.ns_fds.append((os.open(f"/proc/{init}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC), flag))
            for path in record.get("cgroups", []):
                procs = os.path.join(path, "cgroup.procs")
                self.cgroup_fds.append(os.open(procs, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW))
        except OSError as exc:
            self.close()
            raise EnvboxError(f"cannot enter the launch of {self.profile}: {exc.filename}: {exc.strerror}", "enter as the user who launched it") from None
        # The pids may have been reused while we looked: the init must still be the launch's.
        if owning_launch(proc_parents(), init, {supervisor}) != supervisor:
            self.close()
            raise EnvboxError(f"the launch of {self.profile} ended while entering it", "run 'envbox ps'")

    @property
    def userns(self) -> bool:
        return any(flag == sandbox.CLONE_NEWUSER for _, flag in self.ns_fds)

    def close(self) -> None:
        for fd, _ in self.ns_fds:
            os.close(fd)
        for fd in self.cgroup_fds:
            os.close(fd)
        self.ns_fds, self.cgroup_fds = [], []


def run(target: Target, argv: list[str] | None) -> int:
    """Run argv (default: the app's $SHELL, else /bin/sh) inside the launch; its exit code."""
    argv = argv or [target.env.get("SHELL") or "/bin/sh"]
    sys.stdout.flush()
    sys.stderr.flush()
    import _signal as signal

    # Like system(3): the terminal's Ctrl-C and Ctrl-\ are the command's to act on.
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT)}
    target.terminal = _foreground_terminal()
    try:
        pid = os.fork()
        if pid == 0:
            code = EXIT_ENVBOX
            try:
                code = _joiner(target, argv)
            except BaseException as exc:  # never return into the CLI in the child
                print(f"envbox: enter: {exc}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        target.close()
        _, status = os.waitpid(pid, 0)
        return sandbox.exit_code(status)
    finally:
        if target.terminal:
            _take_terminal(os.getpgrp())  # the command made itself the foreground: take it back
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _foreground_terminal() -> bool:
    """Is stdin a terminal with us in its foreground process group?"""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _take_terminal(pgrp: int) -> None:
    """Make pgrp the terminal's foreground group (SIGTTOU ignored: we may be in the background)."""
    import _signal as signal

    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(0, pgrp)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def _joiner(target: Target, argv: list[str]) -> int:
    """The child: join the namespaces, fork the command into the pid namespace, wait."""
    import _signal as signal

    sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
    for fd, flag in target.ns_fds:
        try:
            sandbox.setns(fd, flag)
        except OSError as exc:
            kind = next(k for k, f in NAMESPACES if f == flag)
            print(f"envbox: cannot join the {kind} namespace of {target.profile} (pid {target.init}): {exc.strerror}", file=sys.stderr)
            return EXIT_ENVBOX
        os.close(fd)
    child = os.fork()
    if child == 0:
        code = EXIT_ENVBOX
        try:
            code = _command(target, argv)
        except BaseException as exc:
            print(f"envbox: enter: {exc}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    for fd in target.cgroup_fds:
        os.close(fd)
    _, status = os.waitpid(child, 0)
    return sandbox.exit_code(status)


def _command(target: Target, argv: list[str]) -> int:
    """In the pid namespace: join the cgroups, take the app's cwd and environment, exec."""
    import _signal as signal

    sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
    for fd in target.cgroup_fds:
        try:
            os.write(fd, b"0\n")
        except OSError as exc:
            print(f"envbox: cannot join the cgroup of {target.profile}: {exc.strerror}", file=sys.stderr)
            return EXIT_ENVBOX
        os.close(fd)
    if target.terminal:
        # A process group of our own, in the foreground, from inside the pid namespace: a job
        # control shell then sees itself in the foreground (the caller's group, outside the
        # namespace, would read as pgrp 0 and the shell could not give the terminal back).
        os.setpgid(0, 0)
        _take_terminal(os.getpgrp())
    try:
        os.chdir(target.cwd)
    except OSError as exc:
        print(f"envbox: warning: cannot enter the app's working directory {target.cwd} ({exc.strerror}); using /", file=sys.stderr)
        os.chdir("/")
    sandbox.prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
    sandbox.restore_app_umask()
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        program = sandbox.find_program(argv[0], target.env.get("PATH", "/usr/bin:/bin"))
        os.execve(program, argv, target.env)
    except sandbox.SandboxFailure as exc:
        print(f"envbox: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"envbox: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return sandbox.EXIT_NOEXEC
    return EXIT_ENVBOX
