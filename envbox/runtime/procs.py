"""What /proc says about processes: parents, pid namespaces, a launch's init. Stdlib only."""

from __future__ import annotations

import os


def proc_parents() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                table[int(name)] = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return table


def children(parents: dict[int, int], pid: int) -> list[int]:
    return sorted(p for p, pp in parents.items() if pp == pid)


def descendants(parents: dict[int, int], pid: int) -> list[int]:
    """Breadth first: children, then grandchildren..."""
    out, queue = [], children(parents, pid)
    while queue:
        p = queue.pop(0)
        out.append(p)
        queue.extend(children(parents, p))
    return out


def ns_pids(pid: int) -> list[int]:
    """The pid of a process in each pid namespace it is in, outermost first (NSpid)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def find_init(parents: dict[int, int], supervisor: int) -> int | None:
    """A launch's init: the nearest descendant of its supervisor that is pid 1 of a pid
    namespace one level below the supervisor's."""
    depth = len(ns_pids(supervisor))
    if not depth:
        return None
    for pid in descendants(parents, supervisor):
        nspids = ns_pids(pid)
        if len(nspids) == depth + 1 and nspids[-1] == 1:
            return pid
    return None


def owning_launch(parents: dict[int, int], pid: int, supervisors: set[int]) -> int | None:
    """The supervisor among `supervisors` that pid is (or descends from), or None."""
    seen = set()
    while pid > 1 and pid not in seen:
        if pid in supervisors:
            return pid
        seen.add(pid)
        pid = parents.get(pid, 0)
    return None


def in_namespace_of(parents: dict[int, int], init: int, inner_pid: int) -> int | None:
    """The host pid of the process that is inner_pid in init's pid namespace, or None."""
    depth = len(ns_pids(init))
    if inner_pid == 1:
        return init
    for pid in descendants(parents, init):
        nspids = ns_pids(pid)
        if len(nspids) == depth and nspids[-1] == inner_pid:
            return pid
    return None


def started_at(pid: int) -> float | None:
    """When a process started, in seconds since the epoch (stat's starttime + boot time)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")
