"""cgroups on the real kernel: OOM kills, fork limits, CPU quotas, cleanup (v1; v2 where present).

Every cgroup a test makes is killed and removed by the `launches` fixture, also when the test
fails. Nothing here writes to a cgroup envbox did not create.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import need

from envbox.cgroups import control as cgroups
from envbox.core.limits import Limits
from envbox.core.errors import LimitError

MiB = 1 << 20
PY = "/usr/bin/python3"  # the system python: no pyenv shim between us and the measured process
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_PY = sys.executable


def _host_backend(limits: Limits) -> str:
    return cgroups.choose_backend(cgroups.probe(), limits).name


@pytest.fixture(autouse=True)
def deadline():
    """No test here may hang: SIGALRM after 90 s turns into a failure."""

    def expire(signum, frame):
        raise TimeoutError("test took longer than 90 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(90)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def host():
    need(os.geteuid() == 0, "cgroup v1 tests need root (v1 cannot be delegated to users)")
    h = cgroups.probe()
    if _host_backend(Limits(memory=64 * MiB, cpu=0.5, pids=10)) != "cgroup1":
        pytest.skip("this host does not take cgroup v1 limits (a cgroup2 or systemd host)")
    return h


@pytest.fixture
def launches(host):
    """make(name, limits) -> Cgroup; every one is killed and removed afterwards."""
    made: list[cgroups.Cgroup] = []

    def make(limits: Limits, name: str = "test") -> cgroups.Cgroup:
        cg = cgroups.create(host, cgroups.choose_backend(host, limits), name, limits)
        made.append(cg)
        return cg

    yield make
    errors = []
    for cg in made:
        try:
            cg.kill_all()
            cg.remove()
        except LimitError as e:  # keep cleaning the others, then fail
            errors.append(e.message)
    assert not errors


def joiner(cg: cgroups.Cgroup):
    """preexec_fn: what the sandbox does before exec, join every cgroup of the launch."""
    files = cg.join_files()

    def join() -> None:
        for path in files:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b"0\n")
            os.close(fd)

    return join


def run_in(cg: cgroups.Cgroup, code: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-c", textwrap.dedent(code)], preexec_fn=joiner(cg), capture_output=True, text=True, timeout=timeout
    )


def test_child_is_in_its_cgroups_from_the_first_instruction(launches):
    cg = launches(Limits(memory=64 * MiB, cpu=1, pids=20))
    argv = ["cat", "/proc/self/cgroup"]
    out = subprocess.run(argv, preexec_fn=joiner(cg), capture_output=True, text=True, timeout=30).stdout
    for controller in ("memory", "cpu", "cpuacct", "pids"):
        line = next(l for l in out.splitlines() if l.split(":")[1] == controller)
        assert line.endswith(f"/envbox/{cg.name}"), line


def test_over_the_memory_cap_is_oom_killed(launches):
    cg = launches(Limits(memory=64 * MiB))
    assert cg.verify(Limits(memory=64 * MiB)) == ()
    result = run_in(cg, "data = b'x' * (256 << 20)  # 4x the cap, every page touched")
    assert result.returncode == -signal.SIGKILL
    assert cg.oom_killed()
    assert cg.usage()["memory_peak"] <= 64 * MiB


def test_under_the_memory_cap_finishes(launches):
    cg = launches(Limits(memory=64 * MiB))
    result = run_in(cg, "data = b'x' * (16 << 20); print(len(data))")
    assert (result.returncode, result.stdout) == (0, f"{16 << 20}\n")
    assert not cg.oom_killed()
    assert 16 * MiB < cg.usage()["memory_peak"] <= 64 * MiB


def test_kill_9_from_outside_is_not_an_oom_kill(launches):
    cg = launches(Limits(memory=64 * MiB))
    proc = subprocess.Popen(["sleep", "60"], preexec_fn=joiner(cg))
    try:
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        assert proc.wait(timeout=30) == -signal.SIGKILL  # the same status an OOM kill gives
    assert not cg.oom_killed()


def test_fork_loop_stops_at_the_pids_cap(launches):
    cap = 16
    cg = launches(Limits(pids=cap))
    result = run_in(
        cg,
        """
        import errno, os, time
        n = 0
        try:
            while n < 200:  # bounded even if the cap did not hold
                if os.fork() == 0:
                    os.close(1), os.close(2)  # so the test's pipes reach EOF
                    time.sleep(60)
                    os._exit(0)
                n += 1
        except OSError as e:
            print(n, errno.errorcode[e.errno])
        """,
    )
    assert result.returncode == 0, result.stderr
    forked, error = result.stdout.split()
    assert error == "EAGAIN"
    assert int(forked) == cap - 1  # the python itself is the cap-th task
    assert cg.usage()["pids"] == cap - 1  # the parent has exited; its children sleep on
    cg.kill_all()
    # (pids.current drops a moment later, when PID 1 reaps the orphans; cgroup.procs at once)
    assert list_pids(cg) == []


def list_pids(cg: cgroups.Cgroup) -> list[int]:
    return sorted({int(p) for path in cg.paths for p in open(os.path.join(path, "cgroup.procs")).read().split()})


def test_half_a_core_gets_about_half_a_core(launches):
    cg = launches(Limits(cpu=0.5))
    assert cg.verify(Limits(cpu=0.5)) == ()
    result = run_in(
        cg,
        """
        import time
        start = time.monotonic()
        while time.monotonic() - start < 3:
            pass
        print(time.process_time(), time.monotonic() - start)
        """,
    )
    cpu, wall = map(float, result.stdout.split())
    # The cap, not the machine's load, is what is tested: at most about half a core, and the
    # kernel throttled the cgroup (a loaded machine may give it less than half: no lower bound).
    assert cpu / wall <= 0.7, (cpu, wall)
    stat = dict(line.split() for line in open(os.path.join(cg.dir_for("cpu"), "cpu.stat")).read().splitlines())
    assert int(stat["nr_throttled"]) > 0, stat
    # The cgroup's own account agrees with what the process saw (python start-up included).
    assert abs(cg.usage()["cpu_seconds"] - cpu) < 0.5


def subtree_state(host) -> dict[str, list[str]]:
    """What envbox has in each hierarchy: the entries of every directory it puts subtrees in."""
    state = {}
    for h in host.v1:
        if h.dir:
            base = os.path.join(h.dir, "envbox")
            state[h.dir] = sorted(e for e in os.listdir(h.dir) if e == "envbox")
            state[base] = sorted(os.listdir(base)) if os.path.isdir(base) else []
    return state


def test_100_create_remove_cycles_leave_nothing_behind(host, launches):
    before = subtree_state(host)
    limits = Limits(memory=64 * MiB, cpu=0.5, pids=10)
    choice = cgroups.choose_backend(host, limits)
    for _ in range(100):
        cg = cgroups.create(host, choice, "cycle", limits)
        try:
            subprocess.run(["true"], preexec_fn=joiner(cg), check=True, timeout=30)
        finally:
            cg.remove()
    assert subtree_state(host) == before


def run_launcher(code: str) -> subprocess.CompletedProcess:
    """Run code as a separate envbox process (a launcher) that exits when done."""
    return subprocess.run([VENV_PY, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=True)


def test_cleanup_stale_removes_the_cgroups_of_a_dead_launcher(host, launches):
    mine = launches(Limits(pids=10))
    # A launcher that creates a cgroup, starts nothing, and exits without removing it.
    code = """
        from envbox.cgroups import control as cgroups
        limits = cgroups.Limits(memory=64 << 20, pids=10)
        host = cgroups.probe()
        cg = cgroups.create(host, cgroups.choose_backend(host, limits), "orphan", limits)
        print("\\n".join(cg.paths))
        """
    out = run_launcher(code)
    orphan = out.stdout.split()
    assert orphan and all(os.path.isdir(p) for p in orphan)
    try:
        removed = cgroups.cleanup_stale(host)
        assert set(orphan) <= set(removed)
        assert not any(os.path.exists(p) for p in orphan)
        assert all(os.path.isdir(p) for p in mine.paths)  # a live launcher's cgroup stays
    finally:
        for p in reversed(orphan):
            if os.path.isdir(p):
                os.rmdir(p)


def test_cleanup_stale_leaves_a_running_orphan_unless_told_to_kill(host):
    # The launcher puts an app in the cgroup and dies: the app outlives its supervisor.
    code = """
        import os, subprocess
        from envbox.cgroups import control as cgroups
        limits = cgroups.Limits(pids=10)
        host = cgroups.probe()
        cg = cgroups.create(host, cgroups.choose_backend(host, limits), "orphan", limits)
        def join():
            for f in cg.join_files():
                with open(f, "w") as fh:
                    fh.write("0\\n")
        subprocess.Popen(["sleep", "60"], preexec_fn=join, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("\\n".join(cg.paths))
        """
    out = run_launcher(code)
    orphan = out.stdout.split()
    app = cgroups.Cgroup("cgroup1", os.path.basename(orphan[0]), tuple(orphan), tuple(("pids",) for _ in orphan))
    try:
        assert not set(orphan) & set(cgroups.cleanup_stale(host))
        assert list_pids(app)
        assert set(orphan) <= set(cgroups.cleanup_stale(host, kill=True))
    finally:
        app.kill_all()
        app.remove()


def test_verify_reports_a_limit_file_that_does_not_hold_the_request(launches):
    limits = Limits(memory=64 * MiB, cpu=0.5)
    cg = launches(limits)
    assert cg.verify(limits) == ()
    # Our own cgroup, so we may change it: as if something had raised the limit behind us.
    with open(os.path.join(cg.dir_for("memory"), "memory.limit_in_bytes"), "w") as f:
        f.write(str(128 * MiB))
    (problem,) = cg.verify(limits)
    assert problem.startswith("memory: ") and "memory.limit_in_bytes holds '134217728', not '67108864'" in problem
    # A limit that was never written is reported too.
    assert cg.verify(Limits(cpu=0.5, pids=5)) == (f"pids: {cg.dir_for('pids')}/pids.max holds 'max', not '5'",)


def test_kernel_refusal_is_a_limit_error_and_leaves_nothing(host):
    # pids.max takes at most PID_MAX_LIMIT (2**22): the kernel answers EINVAL, and the
    # cgroups made so far must go again.
    limits = Limits(pids=2**40)
    before = subtree_state(host)
    with pytest.raises(LimitError, match=r"cannot set pids \(pids.max = 1099511627776\) in .*: Invalid argument"):
        cgroups.create(host, cgroups.choose_backend(host, limits), "refused", limits)
    assert subtree_state(host) == before


def test_rootless_on_v1_cannot_enforce_limits(host):
    user = os.environ.get("ENVBOX_TEST_USER", "envboxtest")
    import pwd

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        need(False, f"no test user {user!r} (tests/run creates it)")
    code = """
        import json
        from envbox.cgroups import control as cgroups
        choice = cgroups.choose_backend(cgroups.probe(), cgroups.Limits(memory=64 << 20, cpu=0.5, pids=10))
        print(json.dumps([choice.name, choice.problems]))
        """
    out = subprocess.run(
        [VENV_PY, "-c", textwrap.dedent(code)],
        user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    import json

    name, problems = json.loads(out.stdout)
    assert name == "none"
    assert [p.split(":")[0] for p in problems] == ["memory", "cpu", "pids"]
    assert all(f"not writable by uid {pw.pw_uid}" in p for p in problems)


# --- cgroup2: only where the host has a v2 hierarchy with controllers -----------------------

@pytest.fixture
def v2_host():
    h = cgroups.probe()
    if _host_backend(Limits(memory=64 * MiB)) != "cgroup2":
        v2 = h.v2
        what = f"cgroup2 at {v2.mount} has controllers {v2.controllers or '()'}" if v2 else "no cgroup2 mount"
        pytest.skip(f"needs a cgroup2 hierarchy envbox can use directly ({what}: a v1/hybrid or systemd host)")
    return h


def test_v2_oom_kills_the_whole_group(v2_host):
    limits = Limits(memory=64 * MiB)
    cg = cgroups.create(v2_host, cgroups.choose_backend(v2_host, limits), "test", limits)
    try:
        assert cg.verify(limits) == ()
        sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=joiner(cg))
        result = run_in(cg, "data = b'x' * (256 << 20)")
        assert result.returncode == -signal.SIGKILL and cg.oom_killed()
        assert sleeper.wait(timeout=30) == -signal.SIGKILL  # memory.oom.group: all of it died
    finally:
        cg.kill_all()
        cg.remove()


def test_v2_fork_loop_stops_at_the_pids_cap(v2_host):
    limits = Limits(pids=8)
    cg = cgroups.create(v2_host, cgroups.choose_backend(v2_host, limits), "test", limits)
    try:
        code = """
            import os
            n = 0
            try:
                while n < 100:
                    if os.fork() == 0:
                        os.close(1), os.close(2)
                        os.pause()
                    n += 1
            except OSError:
                print(n)
            """
        result = run_in(cg, code)
        assert int(result.stdout) == 7
    finally:
        cg.kill_all()
        cg.remove()
