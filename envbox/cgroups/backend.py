"""The choice of a cgroup backend for some limits, with the files it writes. Pure."""

from __future__ import annotations

from envbox.cgroups.host import HostCgroups
from envbox.core.frozen import frozen
from envbox.core.limits import Limits

CPU_PERIOD_US = 100_000  # the CFS period: quotas below are per 100 ms


@frozen
class BackendChoice:
    """How limits will be enforced on this host, and which of them cannot be."""

    name: str  # "cgroup2" | "systemd" | "cgroup1" | "none"
    reason: str  # one line for `envbox doctor` / `envbox plan`
    problems: tuple[str, ...] = ()  # "<limit>: <why it cannot be enforced>"


_CONTROLLER = {"memory": "memory", "memory_swap": "memory", "cpu": "cpu", "pids": "pids"}


def requested(limits: Limits) -> tuple[str, ...]:
    """The names of the limits that are set."""
    return tuple(field for field in _CONTROLLER if getattr(limits, field) is not None)


def choose_backend(host: HostCgroups, limits: Limits) -> BackendChoice:
    """Pick how to enforce limits on this host. Pure: reads only `host`."""
    wanted = requested(limits)
    if not wanted:
        return BackendChoice("none", "no limits requested")
    # Hybrid hosts mount cgroup2 too, with none (or only leftover) controllers: it counts
    # only if it has one of the controllers envbox limits.
    unified = host.v2 is not None and bool(set(host.v2.controllers) & set(_CONTROLLER.values()))
    if unified and host.systemd:
        # Where systemd runs, it owns the cgroup tree; others get cgroups by asking it for a
        # scope (https://systemd.io/CGROUP_DELEGATION/), not by writing into its tree.
        return _choose_systemd(host, wanted)
    if unified and host.v2_base:
        return _choose_v2(host, wanted)
    if any(host.v1_for(_CONTROLLER[field]) for field in wanted):
        return _choose_v1(host, wanted)
    if unified:
        why = f"cgroup2 has no subtree delegated to uid {host.uid} and no systemd manager runs"
    else:
        why = "no cgroup hierarchy with the memory, cpu or pids controller is mounted"
    return _none(wanted, why)


def _none(wanted: tuple[str, ...], why: str) -> BackendChoice:
    return BackendChoice("none", f"limits cannot be enforced: {why}", tuple(f"{f}: {why}" for f in wanted))


def _swap_problem(wanted: tuple[str, ...], available: bool | None, files: str) -> list[str]:
    if "memory_swap" in wanted and available is False:
        return [f"memory_swap: this kernel does not account swap ({files} missing; boot with swapaccount=1)"]
    return []


def _missing(wanted: tuple[str, ...], have: tuple[str, ...], where: str) -> list[str]:
    return [
        f"{f}: {where} does not provide the {_CONTROLLER[f]} controller (it has: {' '.join(have) or 'none'})"
        for f in wanted
        if _CONTROLLER[f] not in have
    ]


def _choose_systemd(host: HostCgroups, wanted: tuple[str, ...]) -> BackendChoice:
    problems = _missing(wanted, host.systemd_controllers, f"the systemd {host.systemd} manager")
    problems += _swap_problem(wanted, host.v2_swap, "memory.swap.max")
    reason = f"systemd {host.systemd} manager: a transient scope per launch in {host.systemd_root}/envbox.slice"
    return BackendChoice("systemd", reason, tuple(problems))


def _choose_v2(host: HostCgroups, wanted: tuple[str, ...]) -> BackendChoice:
    problems = _missing(wanted, host.v2_base_controllers, f"the cgroup2 subtree {host.v2_base}")
    problems += _swap_problem(wanted, host.v2_swap, "memory.swap.max")
    reason = f"cgroup2: one cgroup per launch in {host.v2_base}/envbox"
    return BackendChoice("cgroup2", reason, tuple(problems))


def _choose_v1(host: HostCgroups, wanted: tuple[str, ...]) -> BackendChoice:
    problems, usable = [], []
    for field in wanted:
        h = host.v1_for(_CONTROLLER[field])
        if h is None:
            problems.append(f"{field}: no cgroup v1 {_CONTROLLER[field]} hierarchy is mounted")
        elif h.dir is None:
            problems.append(f"{field}: this process's cgroup {h.current} is outside the mount {h.mount}")
        elif not h.writable:
            why = "cgroup v1 cannot be delegated to users safely"
            problems.append(f"{field}: {h.dir} is not writable by uid {host.uid} ({why})")
        else:
            usable.append(h.dir)
    problems += _swap_problem(wanted, host.v1_swap, "memory.memsw.limit_in_bytes")
    if "memory" in wanted and host.memory_use_hierarchy is False:
        why = "the app's memory would escape its parent's accounting"
        problems.append(f"memory: memory.use_hierarchy is 0: {why}")
    if not usable:
        why = problems[0].split(": ", 1)[1]
        return BackendChoice("none", f"limits cannot be enforced: {why}", tuple(problems))
    dirs = ", ".join(f"{d}/envbox" for d in sorted(set(usable)))
    return BackendChoice("cgroup1", f"cgroup v1: one cgroup per launch in {dirs}", tuple(problems))


def cpu_permyriad(cpu: float) -> int:
    """Cores in 1/10000 (systemd's CPUQuota= takes percent with two decimals)."""
    return round(cpu * 10_000)


def limit_files(backend: str, limits: Limits, *, page: int = 4096) -> tuple[tuple[str, str, str, str], ...]:
    """(limit, controller, file, value) to write, in order, and to read back in verify().

    Memory limits are floored to whole pages here, because the kernel does that itself
    (page_counter_memparse) and verify() compares exactly."""
    floor = lambda n: None if n is None else str(n // page * page)  # noqa: E731
    quota = None if limits.cpu is None else cpu_permyriad(limits.cpu) * CPU_PERIOD_US // 10_000
    pids = None if limits.pids is None else str(limits.pids)
    if backend == "cgroup1":
        # memsw must never be below limit_in_bytes, so limit_in_bytes goes first
        # (Documentation/admin-guide/cgroup-v1/memory.rst, "memory.memsw.limit_in_bytes").
        rows = [
            ("memory", "memory", "memory.limit_in_bytes", floor(limits.memory)),
            ("memory_swap", "memory", "memory.memsw.limit_in_bytes", floor(limits.memory_swap)),
            ("cpu", "cpu", "cpu.cfs_period_us", None if quota is None else str(CPU_PERIOD_US)),
            ("cpu", "cpu", "cpu.cfs_quota_us", None if quota is None else str(quota)),
            ("pids", "pids", "pids.max", pids),
        ]
    else:  # cgroup2, and the scope systemd makes for us (same files; systemd writes them)
        swap = None if limits.memory_swap is None else limits.memory_swap - limits.memory
        rows = [
            ("memory", "memory", "memory.max", floor(limits.memory)),
            ("memory_swap", "memory", "memory.swap.max", floor(swap)),
            ("cpu", "cpu", "cpu.max", None if quota is None else f"{quota} {CPU_PERIOD_US}"),
            ("pids", "pids", "pids.max", pids),
        ]
        if limits.memory is not None:
            # On OOM kill the whole cgroup, not just the biggest process: a half-killed app
            # is worse than a dead one (cgroup-v2.rst, "memory.oom.group"). systemd sets it
            # for OOMPolicy=kill (scopes: 253+); envbox sets it on older managers' scopes.
            rows.append(("memory", "memory", "memory.oom.group", "1"))
    return tuple(row for row in rows if row[3] is not None)


# OOMPolicy= applies to scope units from systemd 253 on; older managers refuse the property.
OOM_POLICY_SCOPES = 253


def systemd_properties(limits: Limits, version: int | None = None) -> tuple[str, ...]:
    """systemd-run -p arguments for the limits (systemd.resource-control(5)); `version` is the
    manager's (None: unknown), for the properties only newer managers take on a scope."""
    props = []
    if limits.memory is not None:
        props += ["-p", f"MemoryMax={limits.memory}"]
        if version is not None and version >= OOM_POLICY_SCOPES:
            props += ["-p", "OOMPolicy=kill"]  # memory.oom.group=1: the app dies whole
    if limits.memory_swap is not None:
        props += ["-p", f"MemorySwapMax={limits.memory_swap - limits.memory}"]
    if limits.cpu is not None:
        whole, frac = divmod(cpu_permyriad(limits.cpu), 100)
        props += ["-p", f"CPUQuota={whole}%" if not frac else f"CPUQuota={whole}.{frac:02d}%"]
    if limits.pids is not None:
        props += ["-p", f"TasksMax={limits.pids}"]
    return tuple(props)
