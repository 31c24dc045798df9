"""Running launches: the supervisors' records in the runtime dir, joined with their cgroups."""

from __future__ import annotations

import marshal
import os

from envbox.fsio import pid_alive


def launch_records(runtime_dir) -> list[tuple[int, dict]]:
    """(supervisor pid, record) of each live launch of this user; records of dead
    supervisors are removed. (os.path, not pathlib: the launch of a single-instance profile
    reads these, and pathlib costs milliseconds to import.)"""
    out = []
    directory = os.path.join(os.fspath(runtime_dir), "launches")
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".launch"):
            continue
        try:
            with open(path, "rb") as f:
                record = marshal.loads(f.read())
            pid = int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            continue
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
