"""Limits through `envbox launch` on this host's real cgroups (v1 here), and `envbox ps`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import no_traceback

HOG = "import sys; b = bytearray(int(sys.argv[1]) * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('survived')"


def v1_memory() -> bool:
    return os.path.isdir("/sys/fs/cgroup/memory") and os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")


def envbox_cgroups() -> list[str]:
    """Every launch cgroup directory envbox has in the v1 hierarchies (should be none at rest)."""
    out = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith("envbox-"):
                out.append(os.path.join(root, d))
        if root.count("/") > 8:
            dirs[:] = []
    return sorted(out)


@pytest.fixture
def capped(root_env):
    if not v1_memory():
        pytest.skip("needs the cgroup v1 memory hierarchy (this machine's layout)")
    root_env.write_profile(
        "capped",
        "command: [/usr/bin/python3, -c]\nlimits: {memory: 64M, pids: 64, cpu: 1}\n",
    )
    return root_env


def test_memory_cap_kills_and_is_reported(capped):
    before = envbox_cgroups()
    result = capped.envbox("launch", "capped", "--", HOG, "256")
    assert result.returncode == 137, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "envbox: capped was killed: memory limit 64 MiB reached"
    assert "survived" not in result.stdout
    no_traceback(result)
    assert set(envbox_cgroups()) <= set(before), "a launch left a cgroup behind"


def test_under_the_cap_runs_normally(capped):
    result = capped.envbox("launch", "capped", "--", HOG, "16")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "survived"
    assert result.stderr == ""


def test_kill_9_from_outside_is_not_called_oom(capped):
    proc = capped.envbox_popen("launch", "capped", "--", "import time; print('up', flush=True); time.sleep(60)", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    app = _deepest(proc.pid)
    os.kill(app, signal.SIGKILL)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 137
    assert "memory limit" not in err


def test_pids_cap_stops_a_fork_loop(capped):
    code = (
        "import os, time\nn = 0\n"
        "while True:\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(30); os._exit(0)\n"
        "    n += 1\nprint(n)\n"
    )
    result = capped.envbox("launch", "capped", "--", code, timeout=60)
    assert result.returncode == 0, result.stderr
    forks = int(result.stdout.strip())
    # 64 tasks in the cgroup: the init, the app itself and its forks.
    assert 50 <= forks < 64, forks


def test_cpu_half_a_core(root_env):
    if not os.path.isdir("/sys/fs/cgroup/cpu"):
        pytest.skip("needs the cgroup v1 cpu hierarchy")
    root_env.write_profile("half", "command: [/usr/bin/python3, -c]\nlimits: {cpu: 0.5}\n")
    busy = (
        "import time, os\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass\nt = os.times(); print(t.user + t.system)\n"
        "cg = next(l.split(':', 2)[2].strip() for l in open('/proc/self/cgroup') if 'cpu' in l.split(':')[1].split(','))\n"
        "mount = next(l.split()[4] for l in open('/proc/self/mountinfo') if ' - cgroup ' in l and 'cpu' in l.split()[-1].split(','))\n"
        "print(dict(l.split() for l in open(mount + cg + '/cpu.stat'))['nr_throttled'])"
    )
    started = time.monotonic()
    result = root_env.envbox("launch", "half", "--", busy, timeout=60)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    cpu, throttled = result.stdout.split()
    # The cap, not the machine's load, is what is tested: at most about half a core, and the
    # kernel throttled the app's cgroup (a loaded machine may give it less: no lower bound).
    assert 0 < float(cpu) / 3.0 <= 0.7, (cpu, wall)
    assert int(throttled) > 0, result.stdout


def test_hundred_launches_leave_no_cgroups(capped):
    before = envbox_cgroups()
    for _ in range(100):
        assert capped.envbox("launch", "capped", "--", "pass").returncode == 0
    assert set(envbox_cgroups()) <= set(before), "a launch left a cgroup behind"


def test_cgroup_of_a_killed_envbox_is_gone_after_the_next_launch(capped):
    before = envbox_cgroups()
    proc = capped.envbox_popen("launch", "capped", "--", "import time; print('up', flush=True); time.sleep(60)", stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    assert len(envbox_cgroups()) > len(before)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.5)
    assert capped.envbox("launch", "capped", "--", "pass").returncode == 0
    assert set(envbox_cgroups()) <= set(before), "a launch left a cgroup behind"


def test_ps_shows_a_running_launch(capped):
    proc = capped.envbox_popen("launch", "capped", "--", "import time; print('up', flush=True); time.sleep(30)", stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        rows = json.loads(capped.envbox("ps", "--json").stdout)
        mine = [r for r in rows if r["pid"] == proc.pid]
        assert len(mine) == 1, rows
        row = mine[0]
        assert row["profile"] == "capped" and row["backend"] == "cgroup1"
        assert row["memory"] and row["memory"] > 0 and row["pids"] >= 2
        text = capped.envbox("ps").stdout
        assert "capped" in text and str(proc.pid) in text
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_rootless_refuses_unenforceable_limits(env):
    if env.mode != "rootless":
        pytest.skip("the refusal is for users who cannot get a cgroup on this host")
    env.write_profile("capped", "command: [sh, -c, 'echo ran']\nlimits: {memory: 64M}\n")
    result = env.envbox("launch", "capped")
    assert result.returncode == 125
    assert result.stderr.startswith("envbox: cannot enforce the limits of capped: memory")
    assert "--allow-unenforced" in result.stderr and "ran" not in result.stdout
    no_traceback(result)
    result = env.envbox("launch", "--allow-unenforced", "capped")
    assert result.returncode == 0 and result.stdout.strip() == "ran"
    assert "WITHOUT its limits" in result.stderr


def _deepest(pid: int) -> int:
    """The app: the last process in the supervisor's chain (supervisor -> relay -> init -> app)."""
    for _ in range(50):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
        if not out:
            return pid
        pid = int(out[0])
    return pid


def test_an_oom_killed_child_is_reported_when_the_app_survives(capped):
    """v1 kills the largest process only: here a child; the app goes on and exits 3."""
    script = f"import subprocess, sys; r = subprocess.run([sys.executable, '-c', {HOG!r}, '256']); print(r.returncode); sys.exit(3)"
    result = capped.envbox("launch", "capped", "--", script)
    assert result.returncode == 3
    assert result.stdout.strip() == "-9"
    assert "reached its memory limit of 64 MiB: the kernel killed one of its processes" in result.stderr
