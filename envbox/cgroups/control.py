"""Per-launch cgroups: limits -> a cgroup (cgroup2, systemd scope, cgroup1); OOM report; cleanup.

Stdlib only and cheap to import: the launch path uses it. Split by job: host (probe the host),
backend (pure: backend choice, files to write), fs (symlink-safe file operations), this module
(the cgroups of one launch); the limits themselves are core values (envbox.core.limits).
"""

from __future__ import annotations

import errno
import os

from envbox.cgroups import fs
from envbox.cgroups.backend import (
    BackendChoice,
    choose_backend,
    limit_files,
    requested,
    systemd_properties,
)
from envbox.cgroups.host import V1_CONTROLLERS, V2_CONTROLLERS, Hierarchy, HostCgroups, probe
from envbox.core.errors import LimitError
from envbox.core.frozen import frozen
from envbox.core.limits import Limits
from envbox.core.names import NAME_RULE, describe_bad_name, is_valid_name

__all__ = [
    "BackendChoice", "Cgroup", "Hierarchy", "HostCgroups", "Limits", "choose_backend", "cleanup_stale",
    "create", "list_running", "probe",
]

SUBTREE = "envbox"  # envbox's own directory in each hierarchy; launches are its children
SLICE = "envbox.slice"  # where systemd puts our scopes
PAGE = os.sysconf("SC_PAGE_SIZE")
REMOVE_WAIT_S = 2.0  # how long remove() waits for killed processes to leave
KILL_WAIT_S = 5.0
# envbox-<profile>-<launcher pid>-<launcher start time>-<n>: the launcher is named by pid and
# start time, so a later envbox can tell that it is gone even if its pid was reused. The
# "envbox-" prefix means no profile name can ever be a control file (those are all
# "<controller>.<file>", "tasks", "notify_on_release", "release_agent").
# (re compiles and caches this on first use, so importing costs nothing.)
LEAF_PATTERN = r"envbox-(?P<profile>[a-z0-9._-]+)-(?P<pid>\d+)-(?P<start>\d+)-(?P<n>\d+)(?:\.scope)?"


@frozen
class Cgroup:
    """The cgroup(s) of one launch, as made by create()."""

    backend: str  # "cgroup1" | "cgroup2" | "systemd" | "none"
    name: str = ""  # the leaf directory (systemd: the scope unit)
    paths: tuple[str, ...] = ()  # one per v1 hierarchy, or the one v2 directory
    controllers: tuple[tuple[str, ...], ...] = ()  # the controllers of each path
    prefix: tuple[str, ...] = ()  # systemd-run argv

    def dir_for(self, controller: str) -> str | None:
        return next((p for p, cs in zip(self.paths, self.controllers) if controller in cs), None)

    def join_files(self) -> tuple[str, ...]:
        """cgroup.procs files the child writes "0\\n" into before exec (0 means "myself"), so
        the app is inside its limits from its first instruction."""
        if self.backend not in ("cgroup1", "cgroup2"):
            return ()
        return tuple(os.path.join(p, "cgroup.procs") for p in self.paths)

    def argv_prefix(self) -> tuple[str, ...]:
        return self.prefix

    def verify(self, limits: Limits) -> tuple[str, ...]:
        """Read each limit back from the kernel; one problem per mismatch (fail closed).

        For systemd, call it once the scope runs: systemd-run --user silently drops
        properties for controllers that are not delegated to the user manager."""
        return _verify(self, limits)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process in this cgroup (its own counter,
        never a guess from exit status 137, which a plain `kill -9` also gives).

        v1 has no memory.oom.group: the OOM killer takes only the biggest process, so on
        cgroup1 the supervisor should kill_all() once this is true."""
        path = self.dir_for("memory")
        if path is None:
            return False
        # v1: memory.oom_control has "oom_kill N" (since 4.13); v2: memory.events.
        name = "memory.oom_control" if self.backend == "cgroup1" else "memory.events"
        try:
            text = fs.read_file(os.path.join(path, name))
        except OSError as exc:
            if fs.gone(exc):  # a systemd scope goes as soon as it is empty: see OomWatch
                return False
            raise
        return fs.keyed(text).get("oom_kill", 0) > 0

    def usage(self) -> dict:
        """{"memory", "memory_peak": bytes, "cpu_seconds": float, "pids": int}; None if unknown."""
        return _usage(self)

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup(s), until none is left."""
        if not self.paths:
            return
        if self.backend == "cgroup2":
            # cgroup.kill (5.14+) kills the whole cgroup at once, racing no fork; the loop
            # below is the fallback for older kernels, and waits for the processes to go.
            _write_ok(self.paths[0], "cgroup.kill", "1")
        fs.wait_until(lambda: not _kill_step(self.paths), KILL_WAIT_S)

    def remove(self) -> None:
        """rmdir the cgroup(s); waits briefly for exiting processes to leave."""
        if self.backend in ("cgroup1", "cgroup2"):
            _remove_leaves(self.paths)


def _write_ok(path: str, name: str, value: str) -> bool:
    try:
        with fs.Dir(path) as d:
            if not d.exists(name):
                return False
            d.write(name, value)
        return True
    except OSError:
        return False


def _kill_step(paths: tuple[str, ...]) -> bool:
    """Kill what is still there; True while processes remain."""
    if not any(fs.read_pids(p) for p in paths):
        return False
    fs.kill_pids(paths)
    return True


def _read_int(path: str | None, name: str, key: str | None = None) -> int | None:
    if path is None:
        return None
    try:
        text = fs.read_file(os.path.join(path, name))
    except OSError:
        return None
    if key is not None:
        return fs.keyed(text).get(key)
    word = text.strip()
    return int(word) if word.isdigit() else None


def _usage(cg: Cgroup) -> dict:
    mem, cpu, pids = cg.dir_for("memory"), cg.dir_for("cpu"), cg.dir_for("pids")
    if cg.backend == "cgroup1":
        ns = _read_int(cg.dir_for("cpuacct"), "cpuacct.usage")
        return {
            "memory": _read_int(mem, "memory.usage_in_bytes"),
            "memory_peak": _read_int(mem, "memory.max_usage_in_bytes"),
            "cpu_seconds": None if ns is None else ns / 1e9,
            "pids": _read_int(pids, "pids.current"),
        }
    # cgroup2: cpu.stat's usage_usec is there even without the cpu controller.
    us = _read_int(cpu or (cg.paths[0] if cg.paths else None), "cpu.stat", "usage_usec")
    return {
        "memory": _read_int(mem, "memory.current"),
        "memory_peak": _read_int(mem, "memory.peak"),
        "cpu_seconds": None if us is None else us / 1e6,
        "pids": _read_int(pids, "pids.current"),
    }


def _verify(cg: Cgroup, limits: Limits) -> tuple[str, ...]:
    if cg.backend == "none":
        return tuple(f"{field}: no cgroup was created for this launch" for field in requested(limits))
    problems = []
    for path in cg.paths:
        if not os.path.isdir(path):
            where = " (is the systemd-run scope running yet?)" if cg.backend == "systemd" else ""
            problems.append(f"cgroup {path} does not exist{where}")
    if problems:
        return tuple(problems)
    for field, controller, name, want in limit_files(cg.backend, limits, page=PAGE):
        path = cg.dir_for(controller)
        if path is None:
            problems.append(f"{field}: this launch has no {controller} cgroup")
            continue
        try:
            got = fs.read_file(os.path.join(path, name)).strip()
        except OSError as e:
            problems.append(f"{field}: cannot read {name} back from {path}: {e.strerror}")
            continue
        if got.split() != want.split():
            problems.append(f"{field}: {os.path.join(path, name)} holds {got!r}, not {want!r}")
    return tuple(problems)


def _leaf_name(profile: str, n: int) -> str:
    return f"envbox-{profile}-{os.getpid()}-{fs.process_start('self')}-{n}"


def create(host: HostCgroups, choice: BackendChoice, name: str, limits: Limits) -> Cgroup:
    """Make the cgroup(s) for one launch of profile `name` and write the limits into them.

    Raises LimitError when a limit cannot be enforced (fail closed) or the kernel refuses."""
    if not is_valid_name(name):
        bad = describe_bad_name(name)
        raise LimitError(f"cannot name a cgroup after profile {bad}", hint=f"use {NAME_RULE}")
    if choice.problems:
        raise LimitError(
            "cannot enforce the limits: " + "; ".join(choice.problems),
            hint="run 'envbox doctor' to see this host's cgroups, or remove the limits from the profile",
        )
    if choice.name == "none":
        return Cgroup("none")
    if choice.name == "systemd":
        return _create_systemd(host, name, limits)
    targets = _targets(host, choice.name)
    if not targets:
        raise LimitError(f"no usable {choice.name} hierarchy on this host", hint="run 'envbox doctor'")
    cg = _make_leaves(targets, name, v2=choice.name == "cgroup2", backend=choice.name)
    try:
        _write_limits(cg, limits)
        problems = _verify(cg, limits)  # fail closed before anything runs in it
        if problems:
            raise LimitError("the kernel did not take the limits: " + "; ".join(problems))
    except BaseException:
        _rollback(cg.paths)
        raise
    return cg


def _write_limits(cg: Cgroup, limits: Limits) -> None:
    for field, controller, file, value in limit_files(cg.backend, limits, page=PAGE):
        path = cg.dir_for(controller)
        if path is None:
            raise LimitError(f"cannot set {field}: no {controller} cgroup was created")
        try:
            with fs.Dir(path) as d:
                d.write(file, value)
        except OSError as e:
            raise LimitError(
                f"cannot set {field} ({file} = {value}) in {path}: {e.strerror}",
                hint="the parent cgroup may allow less, or the controller may be missing",
            ) from None


def _targets(host: HostCgroups, backend: str) -> tuple[tuple[tuple[str, ...], str], ...]:
    """(controllers, directory to put envbox's subtree in) per hierarchy.

    The subtree goes below this process's own cgroup in each hierarchy, not at the root:
    launches then stay inside whatever accounting and limits already apply to the process
    that starts them (a login session, a service, a CI job), and envbox writes no file of
    any cgroup it did not create. On cgroup2 the "no internal processes" rule forbids
    children with controllers below a cgroup that has processes, so there it is the nearest
    ancestor that already delegates controllers (see cgroups_host._v2_base)."""
    if backend == "cgroup1":
        return tuple(
            (tuple(c for c in h.controllers if c in V1_CONTROLLERS), h.dir)
            for h in host.v1
            if h.dir and h.writable and set(h.controllers) & set(V1_CONTROLLERS)
        )
    controllers = tuple(c for c in V2_CONTROLLERS if c in host.v2_base_controllers)
    return ((controllers, host.v2_base),) if host.v2_base else ()


def _make_leaves(targets, profile: str, *, v2: bool, backend: str) -> Cgroup:
    # The mkdir in the first hierarchy reserves the name: EEXIST there means another launch
    # from this same process holds it, so take the next n.
    (controllers, parent), rest = targets[0], targets[1:]
    for n in range(1, 10_000):
        leaf = _leaf_name(profile, n)
        try:
            paths = [_make_leaf(parent, leaf, controllers, v2=v2)]
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise LimitError(f"cannot create cgroup {leaf} in {parent}/{SUBTREE}: {e.strerror}") from None
    else:
        raise LimitError(f"cannot find a free cgroup name for {profile} in {parent}/{SUBTREE}")
    try:
        for ctrls, par in rest:
            paths.append(_make_leaf(par, leaf, ctrls, v2=v2))
    except OSError as e:
        _rollback(tuple(paths))
        raise LimitError(f"cannot create cgroup {leaf} in {e.filename or par}: {e.strerror}") from None
    all_controllers = (controllers,) + tuple(c for c, _ in rest)
    return Cgroup(backend, leaf, tuple(paths), all_controllers)


def _make_leaf(parent: str, leaf: str, controllers: tuple[str, ...], *, v2: bool) -> str:
    for _ in range(3):
        try:
            base = fs.ensure_dir(parent, SUBTREE)
            with fs.Dir(base) as d:
                if v2:
                    # Our own subtree hands its controllers down to the launches.
                    d.write("cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))
                d.mkdir(leaf)
            return os.path.join(base, leaf)
        except FileNotFoundError:
            continue  # another launch's remove() just took the empty subtree away: again
    raise LimitError(f"cannot create {parent}/{SUBTREE}/{leaf}: it keeps disappearing")


def _rollback(paths: tuple[str, ...]) -> None:
    for path in reversed(paths):
        try:
            fs.remove_dir(path)
        except OSError:
            continue
        _drop_if_empty(os.path.dirname(path))


def _drop_if_empty(base: str) -> bool:
    """rmdir envbox's subtree once no launch is left in it (so it never pins the parent)."""
    try:
        fs.remove_dir(base)
    except OSError:  # ENOTEMPTY / EBUSY: other launches still use it
        return False
    return True


def _remove_leaves(paths: tuple[str, ...]) -> None:
    stuck = []
    for path in paths:
        # A killed process leaves its cgroups only once it has fully exited, a moment after
        # SIGKILL; until then rmdir fails with EBUSY.
        if fs.wait_until(lambda: _try_rmdir(path), REMOVE_WAIT_S):
            _drop_if_empty(os.path.dirname(path))
        else:
            stuck.append(path)
    if stuck:
        raise LimitError(
            f"cannot remove cgroup {', '.join(stuck)}: processes are still in it",
            hint="'envbox ps' lists them; they are removed once those processes end",
        )


def _try_rmdir(path: str) -> bool:
    try:
        fs.remove_dir(path)
    except OSError as e:
        if e.errno == errno.EBUSY:  # still has processes
            return False
        raise LimitError(f"cannot remove cgroup {path}: {e.strerror}") from None
    return True


def _create_systemd(host: HostCgroups, profile: str, limits: Limits) -> Cgroup:
    slice_dir = os.path.join(host.systemd_root, SLICE)
    n = 1
    while os.path.lexists(os.path.join(slice_dir, _leaf_name(profile, n) + ".scope")):
        n += 1
    unit = _leaf_name(profile, n) + ".scope"
    import shutil

    # An absolute path from a fixed PATH: execv does not search PATH, and a bare name would
    # run ./systemd-run from the working directory.
    systemd_run = shutil.which("systemd-run", path="/usr/local/bin:/usr/bin:/bin")
    if systemd_run is None:
        raise LimitError("systemd-run is not installed, so no systemd scope can be made", "install systemd, or run without limits")
    argv = (
        systemd_run,
        *(("--user",) if host.systemd == "user" else ()),
        "--scope",
        "--quiet",
        "--collect",  # unload the unit even if the app fails, so names never pile up
        f"--unit={unit}",
        "--slice=envbox",
        *systemd_properties(limits, _manager_version(systemd_run) if limits.memory is not None else None),
        "--",
    )
    controllers = tuple(c for c in V2_CONTROLLERS if c in host.systemd_controllers)
    return Cgroup("systemd", unit, (os.path.join(slice_dir, unit),), (controllers,), argv)


def _manager_version(systemd_run: str) -> int | None:
    """systemd's version, for the properties a scope takes. systemd-run links
    libsystemd-shared-<version>.so, so its name in the binary (60 KB) says it without running
    anything; `systemd-run --version` ("systemd 252 (252.39-1~deb12u1)") when it does not."""
    try:
        with open(systemd_run, "rb") as f:
            data = f.read(4 << 20)
    except OSError:
        data = b""
    at = data.find(b"libsystemd-shared-")
    if at >= 0:
        digits = data[at + 18:at + 24]
        n = len(digits) - len(digits.lstrip(b"0123456789"))
        if n >= 3:
            return int(digits[:n])
    from envbox import helper

    try:
        out = helper.run([systemd_run, "--version"], timeout_s=10, check=False).stdout
    except helper.HelperFailed:
        return None
    words = (out or "").split()
    return int(words[1]) if len(words) > 1 and words[0] == "systemd" and words[1].isdigit() else None


def complete_scope(cg: Cgroup, limits: Limits) -> None:
    """What a systemd scope needs beyond its properties, once it runs: memory.oom.group=1 where
    the manager (before 253) has no OOMPolicy= for scopes. The scope was made for this launch."""
    if cg.backend != "systemd" or limits is None or limits.memory is None or not cg.paths:
        return
    path = cg.paths[0]
    try:
        if fs.read_file(os.path.join(path, "memory.oom.group")).strip() == "0":
            _write_ok(path, "memory.oom.group", "1")
    except OSError:
        pass  # no such file: verify() says what is missing


def _bases(host: HostCgroups) -> list[tuple[str, tuple[str, ...], str]]:
    """(backend, controllers, subtree directory) for every place envbox puts launches."""
    bases = [
        (backend, ctrls, os.path.join(parent, SUBTREE))
        for backend in ("cgroup1", "cgroup2")
        for ctrls, parent in _targets(host, backend)
    ]
    if host.systemd_root:
        ctrls = tuple(c for c in V2_CONTROLLERS if c in host.systemd_controllers)
        bases.append(("systemd", ctrls, os.path.join(host.systemd_root, SLICE)))
    return bases


def parse_leaf(leaf: str) -> dict | None:
    """The parts of envbox-<profile>-<pid>-<start>-<n>[.scope], or None (LEAF_PATTERN, without
    importing re on the launch path)."""
    name = leaf.removesuffix(".scope")
    if not name.startswith("envbox-"):
        return None
    parts = name[len("envbox-"):].rsplit("-", 3)
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
        return None
    return {"profile": parts[0], "pid": parts[1], "start": parts[2], "n": parts[3]}


def _scan(host: HostCgroups) -> list[tuple[dict, Cgroup]]:
    """Every launch cgroup in envbox's subtrees, with the parts of its name."""
    found: dict[tuple[str, str], list[tuple[tuple[str, ...], str]]] = {}
    for backend, ctrls, base in _bases(host):
        try:
            with fs.Dir(base) as d:
                names = d.subdirs()
        except NotADirectoryError:
            continue
        except OSError as exc:
            if fs.gone(exc):
                continue
            raise
        for leaf in names:
            match = parse_leaf(leaf)
            if match and is_valid_name(match["profile"]):
                found.setdefault((backend, leaf), []).append((ctrls, os.path.join(base, leaf)))
    return [
        (
            parse_leaf(leaf),
            Cgroup(backend, leaf, tuple(p for _, p in parts), tuple(c for c, _ in parts)),
        )
        for (backend, leaf), parts in sorted(found.items())
    ]


def _launcher_alive(match: dict) -> bool:
    return fs.process_start(match["pid"]) == int(match["start"])


def list_running(host: HostCgroups) -> list[dict]:
    """For `envbox ps`: every launch cgroup envbox has on this host (from this cgroup down)."""
    return [
        {
            "name": cg.name,
            "profile": match["profile"],
            "backend": cg.backend,
            "launcher_pid": int(match["pid"]),
            "launcher_alive": _launcher_alive(match),
            "paths": list(cg.paths),
            "pids": sorted({pid for p in cg.paths for pid in fs.read_pids(p)}),
            "usage": cg.usage(),
        }
        for match, cg in _scan(host)
    ]


def cleanup_stale(host: HostCgroups, *, kill: bool = False) -> list[str]:
    """Remove launch cgroups whose launcher (pid + start time in the name) is gone.

    A stale cgroup that still has processes (an app that outlived its supervisor) is left
    alone unless kill=True. systemd scopes are never removed here: systemd removes them once
    they are empty. Touches nothing outside envbox's subtrees. Returns the removed paths."""
    removed = []
    for match, cg in _scan(host):
        if _launcher_alive(match):
            continue
        busy = any(fs.read_pids(p) for p in cg.paths)
        if busy and kill:
            cg.kill_all()
        if cg.backend == "systemd" or (busy and not kill):
            continue
        try:
            cg.remove()
        except LimitError:
            continue
        removed.extend(cg.paths)
    for backend, _, base in _bases(host):
        if backend != "systemd" and os.path.isdir(base) and _drop_if_empty(base):
            removed.append(base)
    return removed
