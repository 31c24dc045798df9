"""Running launches: the supervisors' records in the runtime dir, joined with their cgroups.

The runtime dir may be /tmp/envbox-UID (no $XDG_RUNTIME_DIR), which another user can create
first and fill: it is used only when it is this user's own and writable by nobody else, and
each record is read without following links or blocking, with a size cap, and checked field
by field. Text from a record is escaped when printed (names.printable)."""

from __future__ import annotations

import marshal
import os

from envbox.fsio import pid_alive

RECORD_MAX = 64 << 10  # a record is a few hundred bytes


class UntrustedRuntimeDir(Exception):
    """The runtime directory (or its launches/) is not this user's own."""


def check_dirs(runtime_dir) -> None:
    """Raise UntrustedRuntimeDir naming the problem unless both directories are our own."""
    from envbox import fsio

    for directory in (os.fspath(runtime_dir), os.path.join(os.fspath(runtime_dir), "launches")):
        problem = fsio.private_dir_problem(directory)
        if problem:
            raise UntrustedRuntimeDir(problem)


def _record(data: bytes | None) -> dict | None:
    """A launch record with the fields and types the supervisor writes, or None."""
    if data is None:
        return None
    try:
        record = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(record, dict):
        return None
    fields = {"profile": str, "pid": int, "started": (int, float), "backend": str, "cgroups": list, "layers": list}
    for key, kind in fields.items():
        if key in record and not isinstance(record[key], kind):
            return None
    if not isinstance(record.get("pid"), int) or record["pid"] <= 0:
        return None
    if not all(isinstance(x, str) for x in record.get("cgroups", []) + record.get("layers", [])):
        return None
    return record


def launch_records(runtime_dir) -> list[tuple[int, dict]]:
    """(supervisor pid, record) of each live launch of this user; records of dead
    supervisors are removed. Raises UntrustedRuntimeDir unless the directories are our own.
    (os.path, not pathlib: the launch of a single-instance profile reads these, and pathlib
    costs milliseconds to import.)"""
    from envbox import fsio

    out = []
    runtime_dir = os.fspath(runtime_dir)
    directory = os.path.join(runtime_dir, "launches")
    check_dirs(runtime_dir)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".launch"):
            continue
        record = _record(fsio.read_quiet(path, limit=RECORD_MAX))
        if record is None:
            continue
        pid = record["pid"]
        if not pid_alive(pid):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        out.append((pid, record))
    return out


def enter_handle(rows: list[dict], row: dict) -> str:
    """What to type to enter a launch: its profile's name while it is the only launch of
    that profile, else its pid."""
    same = [r for r in rows if r["profile"] == row["profile"]]
    return str(row["profile"]) if len(same) == 1 else str(row["pid"])


def running_launches(runtime_dir, cgroup_rows: list[dict]) -> list[dict]:
    """One row per live launch of this user."""
    by_pid = {row["launcher_pid"]: row for row in cgroup_rows}
    out = []
    for pid, record in launch_records(runtime_dir):
        cg = by_pid.get(pid, {})
        usage = cg.get("usage") or {}
        out.append({
            "profile": record.get("profile"),
            "pid": pid,
            "started": record.get("started"),
            "backend": record.get("backend", "none"),
            "cgroups": record.get("cgroups", []),
            "memory": usage.get("memory"),
            "cpu_seconds": usage.get("cpu_seconds"),
            "pids": usage.get("pids"),
            "layers": record.get("layers", []),
        })
    for row in out:
        row["enter"] = f"envbox enter {enter_handle(out, row)}"
    return out
