"""Helpers for bench/run.py: statistics, timed and interleaved commands, /proc, machine facts, the report.

Stdlib only. `python lib.py --plot DATA.json OUT.png` draws the chart; run.py runs that with an
interpreter that has matplotlib (it may live in a separate venv, never in the system).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# ---- statistics ------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), so p10/p90 of few samples stay inside them."""
    data = sorted(values)
    pos = q * (len(data) - 1)
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summary(values: list[float]) -> dict:
    return {"median": quantile(values, 0.5), "p10": quantile(values, 0.1), "p90": quantile(values, 0.9),
            "p95": quantile(values, 0.95), "n": len(values)}


def paired_ratio(values: list[float], base: list[float]) -> float:
    """Median of the per-round ratios: both runs of a round saw the same machine state."""
    return quantile([a / b for a, b in zip(values, base)], 0.5)


# ---- commands --------------------------------------------------------------------------------


class CommandFailed(Exception):
    """A benchmarked command exited non-zero: the benchmark's only reason to fail."""


@dataclass(frozen=True)
class Cmd:
    """One benchmarked command line and how to run it."""

    name: str  # key in the results
    label: str  # shown in the report
    argv: tuple[str, ...]
    env: dict = field(default_factory=dict, hash=False)
    cwd: str = "/"
    user: str | None = None  # run as this user (rootless cases)

    def shell(self) -> str:
        import shlex

        who = f"[as {self.user}] " if self.user else ""
        return who + shlex.join(self.argv)


def run_timed(cmd: Cmd, timeout: float = 600) -> float:
    """Wall-clock milliseconds from spawn to exit. Every command pays the same subprocess overhead,
    which the bare /bin/true row shows."""
    extra = {"user": cmd.user, "group": cmd.user, "extra_groups": []} if cmd.user else {}
    start = time.perf_counter()
    result = subprocess.run(cmd.argv, env=cmd.env, cwd=cmd.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, timeout=timeout, **extra)
    elapsed = (time.perf_counter() - start) * 1000
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip()[-600:]
        raise CommandFailed(f"{cmd.name}: `{cmd.shell()}` exited {result.returncode}\n{tail}")
    return elapsed


def interleave(cmds: list[Cmd], rounds: int, *, warmup: int = 2, progress=print) -> dict[str, list[float]]:
    """Round-robin: each round runs every command once, the order rotated by one each round so
    that no command always runs right after the same neighbour (caches, CPU frequency)."""
    for _ in range(warmup):
        for cmd in cmds:
            run_timed(cmd)
    times: dict[str, list[float]] = {c.name: [] for c in cmds}
    for i in range(rounds):
        shift = i % len(cmds)
        for cmd in cmds[shift:] + cmds[:shift]:
            times[cmd.name].append(run_timed(cmd))
        if (i + 1) % 10 == 0 or i + 1 == rounds:
            progress(f"  round {i + 1}/{rounds}")
    return times


def concurrent(cmd: Cmd, count: int) -> tuple[list[float], list[str]]:
    """`count` runs started together (a barrier releases all threads at once): latencies, failures."""
    barrier = threading.Barrier(count)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            ms = run_timed(cmd)
        except (CommandFailed, subprocess.TimeoutExpired) as exc:
            with lock:
                failures.append(str(exc))
            return
        with lock:
            latencies.append(ms)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures


# ---- /proc -----------------------------------------------------------------------------------


def _parents() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every process now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out[int(entry)] = (ppid, comm)
    return out


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every process below pid."""
    table = _parents()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append((p, table[p][1]))
        todo += children.get(p, [])
    return out


def status_kb(pid: int, key: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_while_running(cmd: Cmd, app_comm: str, timeout: float = 10) -> int:
    """VmRSS (KiB) of the process cmd starts, read once the app (a descendant named app_comm) runs."""
    extra = {"user": cmd.user, "group": cmd.user, "extra_groups": []} if cmd.user else {}
    proc = subprocess.Popen(cmd.argv, env=cmd.env, cwd=cmd.cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **extra)
    rss = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(comm == app_comm for _, comm in descendants(proc.pid)):
            rss = status_kb(proc.pid)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or rss is None:
        raise CommandFailed(f"{cmd.name}: `{cmd.shell()}` exited {proc.returncode} (app seen: {rss is not None})\n"
                            f"{err.decode(errors='replace')[-600:]}")
    return rss


# ---- machine facts ---------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def cgroup_layout() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    if os.path.isdir("/sys/fs/cgroup/unified"):
        return "v1 hybrid (v2 at /sys/fs/cgroup/unified)"
    return "v1"


def git_commit(repo: Path) -> str:
    head = _first_line(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def machine(repo: Path, python: str) -> dict:
    return {
        "kernel": platform.release(),
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "OS": _os_name(),
        "cgroups": cgroup_layout(),
        "Python (envbox)": f"{_first_line([python, '-c', 'import sys; print(sys.version.split()[0])'])} ({python})",
        "envbox commit": git_commit(repo),
        "bwrap": _first_line(["bwrap", "--version"]),
        "firejail": _first_line(["firejail", "--version"]),
        "unshare": _first_line(["unshare", "--version"]),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


# ---- the chart -------------------------------------------------------------------------------


def plot(data: dict, out: str) -> None:
    """Horizontal bars: the median, with p10-p90 whiskers; one panel per unit."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the PNG
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = data["panels"]
    heights = [max(2.0, 0.38 * len(p["bars"]) + 1.2) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights})
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, panel in zip(axes, panels):
        bars = panel["bars"]
        y = list(range(len(bars)))[::-1]
        med = [b["median"] for b in bars]
        err = [[b["median"] - b["p10"] for b in bars], [b["p90"] - b["median"] for b in bars]]
        colors = [b.get("color", "#4c72b0") for b in bars]
        ax.barh(y, med, xerr=err, color=colors, capsize=3, ecolor="#333333")
        ax.set_yticks(y, [b["label"] for b in bars], fontsize=8)
        if panel.get("log"):
            ax.set_xscale("log")
            # Plain numbers (2, 5, 10, 20 ...) read better than 2x10^0 on a short axis.
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        ax.set_xlabel(panel["unit"])
        ax.set_title(panel["title"], fontsize=10)
        for yi, b in zip(y, bars):  # the median's value, right of its whisker
            ax.annotate(f"  {b['median']:.3g}", (b["p90"], yi), va="center", fontsize=7)
        ax.set_xlim(right=max(b["p90"] for b in bars) * (2.0 if panel.get("log") else 1.15))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(data["title"], fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def matplotlib_python(cache: Path, log=print) -> str | None:
    """An interpreter that can import matplotlib: this one, or a venv kept in cache (made once with
    the system Python's venv module and pip; never installed into the system). None on failure."""
    if subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0:
        return sys.executable
    venv = cache / "mpl-venv"
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True).returncode == 0:
        return str(python)
    log(f"installing matplotlib into {venv} (once)")
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "matplotlib"], check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"cannot install matplotlib ({exc}); the PNG is skipped")
        return None
    return str(python)


# ---- the report -----------------------------------------------------------------------------

ENVBOX_COLOR, OTHER_COLOR = "#dd8452", "#4c72b0"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _met(value: float | None, limit: float) -> str:
    return "n/a" if value is None else ("**yes**" if value <= limit else "**no**")


def _ratio(times: dict, a: str, b: str) -> float | None:
    return paired_ratio(times[a], times[b]) if a in times and b in times else None


def _ratio_row(what: str, times: dict, a: str, b: str, limit: float, base: str) -> list[str]:
    r = _ratio(times, a, b)
    if r is None:
        return [what, f"≤ {limit:g}× {base}", "skipped (see notes)", "n/a"]
    med = lambda k: _ms(quantile(times[k], 0.5))  # noqa: E731
    return [what, f"≤ {limit:g}× {base}", f"{r:.2f}× ({med(a)} ms vs {med(b)} ms)", _met(r, limit)]


def _abs_row(what: str, times: dict, key: str, limit: float) -> list[str]:
    if key not in times:
        return [what, f"≤ {limit:g} ms", "skipped", "n/a"]
    med = quantile(times[key], 0.5)
    return [what, f"≤ {limit:g} ms", f"{_ms(med)} ms (p90 {_ms(quantile(times[key], 0.9))})", _met(med, limit)]


def target_rows(results: dict) -> list[list[str]]:
    """(what, target, measured, met?) for every target of the issue, read from the results."""
    t = results["root"]["times"]
    rows = [
        _ratio_row("1. `envbox launch P -- /bin/true`, warm, no limits (root)", t, "envbox", "bwrap", 4, "bwrap"),
        _ratio_row("1. the same", t, "envbox", "firejail", 0.5, "firejail"),
    ]
    u = results["rootless"]["times"] if results["rootless"] else {}
    rows.append(_ratio_row("1. the same as the unprivileged user", u, "u-envbox", "u-bwrap", 3.5, "bwrap --unshare-user"))
    rows.append(_ratio_row("2. launched from the desktop entry's Exec", t, "desktop", "bwrap", 4, "bwrap"))
    rows.append(_ratio_row("2. the same", t, "desktop", "firejail", 0.5, "firejail"))
    rows.append(_abs_row("3. memory + cpu + pids limits, cgroup v1", t, "limits", 25))
    rows.append(_ratio_row("4. 100 layers vs 2 layers", t, "layers100", "layers2", 1.5, "2 layers"))
    rows.append(_layers400_row(results))
    rows.append(_build_row(results["build"]))
    rows.append(_concurrent_row(results["concurrent"]))
    rows.append(_abs_row("7. `envbox --help` (fast launcher, full CLI)", t, "help", 150))
    rows.append(_abs_row("7. `envbox list`", t, "list", 150))
    rows.append(_memory_row(results["memory"]))
    return rows


def _layers400_row(results: dict) -> list[str]:
    facts, times = results["layers"], results["root"]["times"].get("layers400", [])
    what = (f"4. 400 layers, {facts['layer_path']}-byte paths ({facts['lowerdir_bytes']:,} bytes of lowerdirs, "
            "the old option string stops at 4,095)")
    measured = f"{len(times)}/{len(times)} launches saw /usr/bin/t001 and /usr/bin/t400; median {_ms(quantile(times, 0.5))} ms"
    return [what, "works, no truncated path", measured, "**yes**" if times else "n/a"]


def _build_row(build: dict | None) -> list[str]:
    what = "5. cold build of python 2.7 vs `apt-get download` + `dpkg-deb -x`"
    if not build:
        return [what, "≤ 1.3×", "skipped (see notes)", "n/a"]
    t = build["times"]
    r = paired_ratio(t["envbox"], t["apt"])
    measured = f"{r:.2f}× ({quantile(t['envbox'], 0.5):.2f} s vs {quantile(t['apt'], 0.5):.2f} s, rounds: {len(t['apt'])})"
    return [what, "≤ 1.3×", measured, _met(r, 1.3)]


def _concurrent_row(c: dict) -> list[str]:
    total = c["count"] * c["batches"]
    lat = c["latencies"]
    s = summary(lat) if lat else {"median": 0, "p95": 0}
    measured = f"{len(lat)}/{total} ok; p50 {_ms(s['median'])} ms, p95 {_ms(s['p95'])} ms"
    return [f"6. {c['count']} concurrent launches ({c['batches']} batches)", "all succeed; p50/p95 reported",
            measured, "**yes**" if not c["failures"] else "**no**"]


def _memory_row(memory: dict) -> list[str]:
    worst = max(max(v) for v in memory.values()) / 1024
    parts = ", ".join(f"{name}: {max(v) / 1024:.1f} MiB" for name, v in memory.items())
    return ["7. supervisor VmRSS while the app runs", "≤ 20 MiB", f"{worst:.1f} MiB max ({parts})", _met(worst, 20)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def _launch_rows(group: dict, bases: list[str]) -> list[list[str]]:
    times = group["times"]
    rows = []
    for cmd in group["cmds"]:
        s = summary(times[cmd.name])
        ratios = [f"{_ratio(times, cmd.name, b):.2f}×" if b in times else "–" for b in bases]
        rows.append([f"`{cmd.label}`", _ms(s["median"]), _ms(s["p10"]), _ms(s["p90"]), *ratios])
    return rows


def markdown(results: dict, meta: dict) -> str:
    lines = ["# envbox benchmark results", "",
             f"{meta['date']}, {meta['mode']} run, {meta['rounds']} interleaved rounds per launch command. "
             f"Reproduce from the repository root: `{meta['command']}` (see bench/README.md).", "",
             "## Targets", ""]
    lines += _table(["target", "goal", "measured (medians)", "met?"], target_rows(results))
    lines += ["", "## Launches as root (ms)", "",
              "Wall-clock from spawn to exit, interleaved round-robin; × = median of the per-round ratios.", ""]
    lines += _table(["command", "median", "p10", "p90", "× bwrap", "× firejail"], _launch_rows(results["root"], ["bwrap", "firejail"]))
    if results["rootless"]:
        lines += ["", "## Launches as the unprivileged user envboxtest (ms)", ""]
        lines += _table(["command", "median", "p10", "p90", "× bwrap --unshare-user"], _launch_rows(results["rootless"], ["u-bwrap"]))
    lines += _extra_sections(results)
    lines += ["", "## Machine", ""] + _table(["", ""], [[k, v] for k, v in meta["machine"].items()])
    lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"] + METHOD_NOTES]
    return "\n".join(lines) + "\n"


METHOD_NOTES = [
    "Every time includes the benchmark's own spawn cost (Python's subprocess: fork/exec, wait), the same for "
    "every row: the `/bin/true` row shows it. As the unprivileged user it is larger (the switch of user "
    "rules out vfork), which lowers every ratio in that table a little.",
    "envbox runs through the fast launcher (`python -m envbox.main --write-launcher`, `-SI`, cached plan) with "
    "HOME and every XDG directory in a scratch directory; every launch is warm (two warm-up passes first).",
    "The desktop row runs the argv of the `Exec=` line that `envbox desktop install p1` wrote, field codes removed.",
    "The layer rows run `sh -c 'test -e /usr/bin/t001 && test -e /usr/bin/tNNN'` inside the launch, so a missing "
    "bottom or top layer fails the run; the 100- and 2-layer profiles run the same shape of command.",
    "Cold build: envbox starts with an empty store and download cache but keeps its apt lists; apt-get uses its "
    "own configuration (like envbox's) over a copy of the same lists and an empty download directory.",
]


def _extra_sections(results: dict) -> list[str]:
    c = results["concurrent"]
    lines = ["", f"## {c['count']} concurrent launches of a warm profile", ""]
    if c["latencies"]:
        s = summary(c["latencies"])
        lines += _table(["launches", "failed", "p50 ms", "p95 ms", "max ms"],
                        [[str(len(c["latencies"])), str(len(c["failures"])), _ms(s["median"]), _ms(s["p95"]), _ms(max(c["latencies"]))]])
    lines += [f"- failure: {f.splitlines()[0]}" for f in c["failures"][:5]]
    lines += ["", "## Supervisor memory (VmRSS of the envbox process while `sleep` runs)", ""]
    lines += _table(["profile", "samples", "median MiB", "max MiB"],
                    [[k, str(len(v)), f"{quantile(v, 0.5) / 1024:.1f}", f"{max(v) / 1024:.1f}"] for k, v in results["memory"].items()])
    build = results["build"]
    if build:
        lines += ["", "## Cold build of python 2.7 (s)", ""]
        rows = [[side, f"{quantile(v, 0.5):.2f}", f"{min(v):.2f}", f"{max(v):.2f}", ", ".join(f"{x:.2f}" for x in v)]
                for side, v in build["times"].items()]
        lines += _table(["side", "median", "min", "max", "rounds"], rows)
        lines += ["", f"{len(build['packages'])} packages, {build['bytes'] / 1e6:.1f} MB: {', '.join(build['packages'])}."]
    return lines


def chart_data(results: dict, meta: dict) -> dict:
    def bars(group: dict) -> list[dict]:
        return [dict(summary(group["times"][c.name]), label=c.label,
                     color=ENVBOX_COLOR if Path(c.argv[0]).name == "envbox" else OTHER_COLOR) for c in group["cmds"]]

    panels = [{"title": "launches as root (median, p10-p90)", "unit": "ms (log)", "log": True, "bars": bars(results["root"])}]
    if results["concurrent"]["latencies"]:
        panels[0]["bars"].append(dict(summary(results["concurrent"]["latencies"]), label="50 concurrent envbox launches (each)", color=ENVBOX_COLOR))
    if results["rootless"]:
        panels.append({"title": "launches as envboxtest (unprivileged)", "unit": "ms (log)", "log": True, "bars": bars(results["rootless"])})
    if results["build"]:
        labels = {"envbox": "envbox build (python 2.7, cold)", "apt": "apt-get download + dpkg-deb -x"}
        panels.append({"title": "cold build of the python 2.7 layer", "unit": "s", "log": False,
                       "bars": [dict(summary(v), label=labels[k], color=ENVBOX_COLOR if k == "envbox" else OTHER_COLOR)
                                for k, v in results["build"]["times"].items()]})
    return {"title": f"envbox benchmark, {meta['date']} ({meta['mode']})", "panels": panels}


def write_report(out: Path, results: dict, meta: dict, log=print) -> None:
    """RESULTS.md and results.png in out (the PNG through an interpreter that has matplotlib)."""
    out.mkdir(parents=True, exist_ok=True)
    python = matplotlib_python(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envbox-bench", log)
    png = out / "results.png"
    png.unlink(missing_ok=True)  # never leave an older run's chart beside this run's table
    if python:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as data:
            data.write(json.dumps(chart_data(results, meta)))
            data.flush()
            done = subprocess.run([python, __file__, "--plot", data.name, str(png)], capture_output=True, text=True)
        if done.returncode != 0:
            results["notes"].append(f"the chart could not be drawn: {done.stderr.strip().splitlines()[-1:]}")
    else:
        results["notes"].append("matplotlib could not be installed: no results.png this time.")
    (out / "RESULTS.md").write_text(markdown(results, meta))
    log(f"wrote {out / 'RESULTS.md'}" + (f" and {png}" if png.exists() else ""))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plot"] and len(sys.argv) == 4:
        plot(json.loads(Path(sys.argv[2]).read_text()), sys.argv[3])
    else:
        sys.exit("usage: lib.py --plot DATA.json OUT.png")
