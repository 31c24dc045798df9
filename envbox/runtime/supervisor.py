"""The supervisor: cgroup, fork the sandbox, forward signals, reap, report. Stdlib only.

envbox stays as a small parent rather than exec'ing the app directly because something must
outlive the app to read the OOM counters, remove the cgroup and turn death by signal into
128+N. The app itself runs under a small init in its own pid namespace (sandbox.py), and keeps
its place in the terminal's process group, so job control and terminal signals work as if
envbox were not there (docs/design-notes.md).
"""

from __future__ import annotations

import os
# _signal is the C module behind `signal`; importing `signal` itself pulls in enum
# (~6 ms at start-up here), which the launch path cannot afford.
import _signal as signal
import sys

from envbox.fsio import unlink_quiet
from envbox.runtime import sandbox
from envbox.core import sandboxargs

SANDBOX_FILE = os.path.realpath(sandbox.__file__)
EXIT_ENVBOX = sandbox.EXIT_ENVBOX  # one definition on the launch path (core.errors mirrors it; a test checks)

class LaunchSpec:
    """Everything the supervisor needs, as plain values (no dataclasses: the fast path is
    measured in milliseconds and `import dataclasses` alone costs several)."""

    __slots__ = ("profile", "userns", "overlays", "env", "cwd", "argv", "limits", "allow_unenforced",
                 "layer_digests", "store_root", "runtime_dir", "readonly", "debug", "closed_fds", "single_instance", "force")

    def __init__(self, *, profile, userns, overlays, env, cwd, argv, limits, allow_unenforced,
                 layer_digests, store_root, runtime_dir, readonly=(), debug=False, closed_fds=(), single_instance=None, force=False):
        self.profile = profile
        self.userns = userns
        self.overlays = overlays  # [(target, [lower dirs top first])]
        self.env = env  # the app's whole environment
        self.cwd = cwd
        self.argv = argv  # the full command line of the app
        self.limits = limits  # {memory, memory_swap, cpu, pids}: None = unset
        self.allow_unenforced = allow_unenforced
        self.layer_digests = layer_digests
        self.store_root = store_root
        self.runtime_dir = runtime_dir
        self.readonly = readonly  # envbox's own directories: read-only for the app
        self.debug = debug
        self.closed_fds = tuple(closed_fds)  # standard fds envbox was started without: the app gets them closed
        self.single_instance = single_instance  # what the running app holds (profile.single_instance)
        self.force = force  # launch even when that app already runs outside envbox

    def sandbox_args(self, cgroup_files=()) -> list:
        return sandboxargs.render(
            userns=self.userns, overlays=self.overlays, env=self.env, cwd=self.cwd,
            argv=self.argv, cgroup_files=cgroup_files, readonly=self.readonly, own_pgrp=not _on_terminal(),
            debug=self.debug, close_fds=self.closed_fds,
        )


def _on_terminal() -> bool:
    """Is envbox in the foreground of the terminal on its stdin? Then the app stays in that
    process group, where the terminal's signals (Ctrl-C, window size) reach it directly."""
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def spec_from_cache(entry: dict, environ, cwd: str, command, extra, *, debug: bool = False, closed_fds=()) -> LaunchSpec:
    """The one place a plan (as Plan.to_cache() data) becomes what the supervisor runs."""
    plan = entry["plan"]
    argv = list(command) if command is not None else [*plan["argv"], *extra]
    return LaunchSpec(
        profile=plan["profile"],
        userns=plan["userns"],
        overlays=plan["overlays"],
        env=sandboxargs.app_env(environ, plan["env"], plan.get("defaults", {}), plan.get("path_tail", False)),
        cwd=cwd,
        argv=argv,
        limits={k: plan["limits"][k] for k in ("memory", "memory_swap", "cpu", "pids")},
        allow_unenforced=entry.get("allow_unenforced", False) or plan["allow_unenforced"],
        layer_digests=plan["digests"],
        store_root=entry["store_root"],
        runtime_dir=entry["runtime_dir"],
        readonly=entry.get("readonly", ()),
        debug=debug,
        closed_fds=closed_fds,
        # Only the profile's own command hands over to a running instance (not `envbox run`).
        single_instance=(plan.get("single_instance") or None) if command is None else None,
        force=entry.get("force", False),
    )


def launcher_argv() -> tuple[str, ...]:
    """How the sandbox is run as a command: the same interpreter, isolated, without site."""
    return (sys.executable, "-SI", SANDBOX_FILE)


def run(spec: LaunchSpec) -> int:
    """Launch and supervise; returns the exit status for envbox to exit with."""
    if spec.single_instance and _already_running(spec):
        return EXIT_ENVBOX
    cgroup = None
    try:
        cgroup = _setup_cgroup(spec)
    except _Refused:  # already said why
        return EXIT_ENVBOX
    use_locks = _hold_layers(spec)
    missing = [d for d in spec.layer_digests if not os.path.isdir(os.path.join(spec.store_root, "layers", d))]
    if missing:
        for fd in use_locks:
            os.close(fd)
        if cgroup is not None:
            cgroup.remove()
        _say(f"layer {missing[0][:16]} of {spec.profile} was removed from the store (by 'envbox gc'?)\nhint: launch again to rebuild it")
        return EXIT_ENVBOX
    record = _register(spec, cgroup)
    try:
        watches: list = []
        code = _spawn_and_wait(spec, cgroup, watches)
        # The app's death by SIGKILL reaches us as 137 through the init; only the kernel's
        # counter says whether the memory cap was the cause.
        try:
            killed = cgroup is not None and _oom_killed(cgroup, code, watches)
        except OSError:  # the report is extra: it never replaces the app's own exit status
            killed = False
        if killed:
            if code == 128 + signal.SIGKILL:
                _say(f"{spec.profile} was killed: memory limit {_fmt_limit(spec.limits)} reached")
            else:  # v1 killed one of the app's processes, not the app itself
                _say(f"note: {spec.profile} reached its memory limit of {_fmt_limit(spec.limits)}: the kernel killed one of its processes")
        return code
    finally:
        if cgroup is not None:
            _remove_cgroup(cgroup, spec.profile)
        if record:
            unlink_quiet(record)
        for fd in use_locks:
            os.close(fd)


def _already_running(spec: LaunchSpec) -> bool:
    """Does the app run outside envbox already (it would take this launch over)? Says so;
    True when the launch must stop (--force makes it a warning)."""
    from envbox.runtime import singleton

    problem = singleton.check(spec.single_instance, spec.profile, spec.argv[1:], spec.runtime_dir, os.environ)
    if problem is None:
        return False
    if spec.force:
        _say("warning: " + problem.partition("\n")[0])
        return False
    _say(problem)
    return True


def _remove_cgroup(cgroup, profile: str) -> None:
    """Kill what is left of the launch and remove its cgroup; report a failure, but keep the
    app's exit status (the next launch or `envbox gc` removes a stale cgroup)."""
    from envbox.core.errors import LimitError  # loaded already with the cgroup code

    try:
        cgroup.kill_all()
        cgroup.remove()
    except (OSError, ValueError, LimitError) as exc:
        _say(f"warning: could not remove the cgroup of {profile}: {exc} (the next launch or 'envbox gc' retries)")


class _Refused(Exception):
    """The limits cannot be enforced and the launch must not run (the reason was printed)."""


def _limits(spec: LaunchSpec):
    """The spec's limits as cgroups.Limits, or None when there are none."""
    given = {k: v for k, v in spec.limits.items() if v is not None}
    if not given:
        return None
    from envbox.cgroups import control as cgroups

    return cgroups.Limits(**given)


def _refuse_unenforced(spec: LaunchSpec, problems: list) -> bool:
    """Say what cannot be enforced; True when the launch must stop (fail closed)."""
    if not spec.allow_unenforced:
        _say(
            f"cannot enforce the limits of {spec.profile}: {'; '.join(problems)}\n"
            "hint: run 'envbox doctor' for what this machine supports; to run without the limits, "
            "pass --allow-unenforced or set limits.allow_unenforced: true in the profile"
        )
        return True
    _say(f"warning: running {spec.profile} WITHOUT its limits: {'; '.join(problems)}")
    return False


def _setup_cgroup(spec: LaunchSpec):
    limits = _limits(spec)
    if limits is None:
        return None
    from envbox.cgroups import control as cgroups

    host = cgroups.probe()
    cgroups.cleanup_stale(host)
    choice = cgroups.choose_backend(host, limits)
    problems = list(choice.problems)
    cgroup = None
    if not problems:
        try:
            cgroup = cgroups.create(host, choice, spec.profile, limits)
        except cgroups.LimitError as exc:
            problems = [exc.message]
        else:
            # A systemd scope exists only once systemd-run runs: checked after start, before
            # the app does (_spawn_and_wait).
            problems = [] if cgroup.backend == "systemd" else list(cgroup.verify(limits))
    if problems:
        if cgroup is not None:
            cgroup.remove()
        if _refuse_unenforced(spec, problems):
            raise _Refused()
        return None
    return cgroup


def _spawn_and_wait(spec: LaunchSpec, cgroup, oom_watch: list | None = None) -> int:
    """Start the sandbox (through the manager's scope when there is one), release it once the
    limits hold, and wait; `oom_watch` receives the scope's OOM watcher (see _watch_oom)."""
    prefix = tuple(cgroup.argv_prefix()) if cgroup is not None else ()
    args = spec.sandbox_args(tuple(cgroup.join_files()) if cgroup is not None else ())
    gate = None
    if prefix:  # the init waits for our word that the limits hold
        gate = os.pipe()
        os.set_inheritable(gate[0], True)
        args = ["--wait-fd", str(gate[0]), *args]
    old_mask = signal.pthread_sigmask(signal.SIG_SETMASK, [])
    watched = sandbox.block_signals()
    try:
        if prefix:
            pid = _spawn_through(prefix, args, gate)
        else:
            # The supervisor itself unshares and mounts, then forks the init: it is not in the
            # pid namespace or the cgroup, and its own mounts are invisible to everyone else.
            if spec.userns and _threads() > 1:
                # unshare(CLONE_NEWUSER) refuses a multi-threaded caller (EINVAL), and worker
                # threads of a build that just ran may still be exiting: a child does it.
                pid = _spawn_through((), args, None)
            else:
                try:
                    pid = sandbox.start(sandbox.parse(args))
                except sandbox.SandboxFailure as exc:
                    print(f"envbox: {exc}", file=sys.stderr)
                    return exc.code
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise
    try:
        if gate:
            os.close(gate[0])
            problems = _verify_started(cgroup, spec, pid)
            if not all(os.path.isdir(p) for p in cgroup.paths) and not _runs_sandbox(pid):
                # The manager's command (systemd-run) neither made the scope nor started the
                # sandbox in time: it hangs (no answer from the manager). Stop it, say so.
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.close(gate[1])
                sandbox.wait_forwarding(pid, watched)
                _say(f"cannot start {spec.profile}: {problems[0]}\nhint: run 'envbox doctor'; check that the systemd user manager answers (systemctl --user status)")
                return EXIT_ENVBOX
            if problems and _refuse_unenforced(spec, problems):
                os.close(gate[1])  # the init reads nothing and exits: the app never starts
                sandbox.wait_forwarding(pid, watched)
                return EXIT_ENVBOX
            if oom_watch is not None:
                oom_watch.append(_watch_oom(cgroup))  # before the app runs: it may die at once
            os.write(gate[1], b"1")
            os.close(gate[1])
        return sandbox.exit_code(sandbox.wait_forwarding(pid, watched))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _watch_oom(cgroup):
    """A thread that counts OOM kills in a systemd scope while it exists (None otherwise):
    systemd removes an emptied scope at once, often before we could read memory.events."""
    if cgroup.backend != "systemd" or not cgroup.paths:
        return None
    from envbox.cgroups.oomwatch import OomWatch

    scope = cgroup.paths[0]
    try:
        return OomWatch(os.path.join(scope, "memory.events"), os.path.join(os.path.dirname(scope), "memory.events"))
    except OSError:  # no memory controller in the scope
        return None


def _oom_killed(cgroup, code: int, watches: list) -> bool:
    if cgroup.oom_killed():
        return True
    watch = next((w for w in watches if w is not None), None)
    return watch is not None and code == 128 + signal.SIGKILL and watch.killed()


def _runs_sandbox(pid: int) -> bool:
    """Whether pid has exec'd the sandbox (launcher_argv: our interpreter), rather than still
    being the manager's command that was to start it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0] == os.fsencode(launcher_argv()[0])
    except OSError:
        return True  # gone: wait_forwarding reports how it ended


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _spawn_through(prefix: tuple, args: list, gate) -> int:
    """A child that runs the sandbox: through the manager's command (systemd-run --scope ...,
    which execs the sandbox as a file inside the new scope), or in-process (no prefix)."""
    pid = os.fork()
    if pid == 0:
        code = EXIT_ENVBOX
        try:
            if gate:
                os.close(gate[1])
            if prefix:
                os.execv(prefix[0], [*prefix, *launcher_argv(), *args])
            code = sandbox.main(["--die-with-parent", *args] if "--die-with-parent" not in args else args)
        except BaseException as exc:  # never return into the supervisor's code in the child
            print(f"envbox: {prefix[0] if prefix else 'sandbox'}: {exc}", file=sys.stderr)
        sys.stdout.flush()
        os._exit(code)
    return pid


def _verify_started(cgroup, spec: LaunchSpec, pid: int, timeout: float = 5.0, settle: float = 2.0) -> list:
    """Limits read back from a cgroup that appears only once the sandbox runs (systemd).

    systemd creates the scope's directory before it writes the unit's properties into it
    (defect D1 of the tests/vm guests: a read in that gap saw 'max'), and systemd-run execs the
    sandbox only once the scope's start job is done: the read waits for that exec. It is then
    repeated for up to `settle` seconds before a mismatch counts, in case a manager applies
    properties late. A property the manager dropped (a controller not delegated to it) stays
    a mismatch, and the launch is refused."""
    import time

    from envbox.cgroups import control as cgroups

    deadline = time.monotonic() + timeout
    while True:
        there = all(os.path.isdir(p) for p in cgroup.paths)
        if there and _runs_sandbox(pid):
            break
        if time.monotonic() > deadline:
            if there:
                break  # the scope is there: read what it holds
            return [f"the cgroup {cgroup.paths[0]} did not appear within {timeout:g} s (systemd-run failed, hangs or ignored --scope)"]
        time.sleep(0.005)
    limits = _limits(spec)
    cgroups.complete_scope(cgroup, limits)
    settled = time.monotonic() + settle
    while True:
        problems = list(cgroup.verify(limits))
        if not problems or time.monotonic() > settled:
            return problems
        time.sleep(0.02)


def _hold_layers(spec: LaunchSpec) -> list[int]:
    """Shared locks on the layers in use: `envbox gc` skips a layer while any are held."""
    fds = []
    if not spec.store_root:
        return fds
    import fcntl

    locks = os.path.join(spec.store_root, "locks")
    for digest in spec.layer_digests:
        path = os.path.join(locks, f"use-{digest}")
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            except OSError:
                break
            fcntl.flock(fd, fcntl.LOCK_SH)
            # gc unlinks the lock file of a layer it removed: a lock on that old file would
            # hold nothing, so lock the file that is there now (the caller then sees the layer
            # is missing and says so).
            try:
                same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
            except OSError:
                same = False
            if same:
                fds.append(fd)
                break
            os.close(fd)
    return fds


def private_dir(path: str) -> str | None:
    """Make (or accept) a directory only this user can use, without following a symlink;
    None when it is one, else why not.

    The runtime directory may live in /tmp (no $XDG_RUNTIME_DIR), where anyone could have
    planted a symlink or a directory of their own under the expected name."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot make {path}: {exc.strerror}"
    from envbox import fsio

    return fsio.private_dir_problem(path) or (None if os.path.isdir(path) else f"{path} is missing")


def _register(spec: LaunchSpec, cgroup) -> str | None:
    """A record for `envbox ps` in the runtime directory; removed when the launch ends."""
    if not spec.runtime_dir:
        return None
    directory = os.path.join(spec.runtime_dir, "launches")
    problem = private_dir(spec.runtime_dir) or private_dir(directory)
    if problem:
        from envbox.core.names import printable

        _say(f"warning: this launch is not recorded for 'envbox ps': {printable(problem)}")
        return None
    import marshal
    import time

    record = {
        "profile": spec.profile,
        "pid": os.getpid(),
        "started": time.time(),
        "backend": getattr(cgroup, "backend", "none") if cgroup else "none",
        "cgroups": list(getattr(cgroup, "paths", ())) if cgroup else [],
        "layers": list(spec.layer_digests),
    }
    path = os.path.join(directory, f"{os.getpid()}.launch")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(record))  # marshal: json would cost the fast path ~10 ms of imports
        return path
    except OSError:
        return None




def _fmt_limit(limits: dict) -> str:
    from envbox.core.limits import format_size

    return format_size(limits["memory"]) if limits.get("memory") else "?"


def _say(message: str) -> None:
    first, _, rest = message.partition("\n")
    print(f"envbox: {first}" + (f"\n{rest}" if rest else ""), file=sys.stderr)
