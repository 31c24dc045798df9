"""envbox launch/run for real: namespaces, overlays over /usr, env, exit codes, signals.

Every case runs as root and as the unprivileged test user (the `env` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import envbox_bin, mountinfo_lines, no_traceback

# The host's own Python 3 (3.11 on Debian 12, 3.13 on Debian 13): a real interpreter for a
# `host:` layer, named by its versioned path so the test follows the system it runs on.
HOST_PY3 = os.path.realpath("/usr/bin/python3")
HOST_PY3_VERSION = subprocess.run([HOST_PY3, "-c", "import sys; print(sys.version_info[:2])"],
                                  capture_output=True, text=True, check=True).stdout.strip()


def fake_prefix(env, name: str, says: str) -> Path:
    """A tiny install prefix whose bin/python prints who it is (a real `dir` source)."""
    prefix = env.base / name
    (prefix / "bin").mkdir(parents=True)
    script = prefix / "bin" / "python"
    script.write_text(f'#!/bin/sh\necho "{says} $*"\n')
    script.chmod(0o755)
    return prefix


def test_two_profiles_see_different_python_at_the_same_time(env):
    prefix = fake_prefix(env, "prefix-a", "python-A")
    env.write_profile("app-a", f"command: [sh]\ntools:\n  python: {{dir: {prefix}}}\n")
    env.write_profile("app-b", f"command: [sh]\ntools:\n  python: {{host: {HOST_PY3}}}\n")
    gate = env.home / "go"
    a = env.envbox_popen(
        "launch", "app-a", "--", "-c", f'/usr/bin/python hello; while [ ! -e {gate} ]; do sleep 0.02; done',
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        b = env.envbox("launch", "app-b", "--", "-c", "/usr/bin/python -c 'import sys; print(sys.version_info[:2])'")
        assert b.returncode == 0, b.stderr
        assert b.stdout.strip() == HOST_PY3_VERSION
        assert a.poll() is None, "app-a should still be running while app-b ran"
    finally:
        gate.touch()
        out, err = a.communicate(timeout=30)
    assert a.returncode == 0, err
    assert out.strip() == "python-A hello"
    assert not os.path.lexists("/usr/bin/python"), "the host's /usr/bin/python must stay absent"


def test_shebangs_run_the_profiles_python(env):
    prefix = fake_prefix(env, "prefix", "python-layer")
    env.write_profile("shebang", f"tools:\n  python: {{dir: {prefix}}}\n")
    for name, line in (("direct.py", "#!/usr/bin/python"), ("via-env.py", "#!/usr/bin/env python")):
        script = env.home / name
        script.write_text(f"{line}\nprint('host python ran this')\n")
        script.chmod(0o755)
        env.give(script)
        result = env.envbox("run", "--profile", "shebang", "--", f"./{name}", "arg1")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("python-layer "), result.stdout
        assert "arg1" in result.stdout


def test_env_is_built_explicitly(env):
    env.write_profile("envtest", "command: [sh, -c, 'env | sort']\nenv: {GREETING: hello, COUNT: 3}\n")
    result = env.envbox("launch", "envtest", env={"LD_PRELOAD": "/nonexistent.so", "PYTHONPATH": "/evil", "LANG": "C.UTF-8", "SECRET_TOKEN": "x"})
    assert result.returncode == 0, result.stderr
    got = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert got["GREETING"] == "hello" and got["COUNT"] == "3"
    assert got["PATH"].startswith("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
    assert got["ENVBOX_PROFILE"] == "envtest"
    assert got["LANG"] == "C.UTF-8" and got["HOME"] == str(env.home)
    assert "LD_PRELOAD" not in got and "PYTHONPATH" not in got and "SECRET_TOKEN" not in got


def test_user_scripts_on_the_callers_path_are_found_after_the_standard_dirs(env):
    """`pip install --user` puts scripts in ~/.local/bin: the app finds them by name, while a
    shim earlier in the caller's PATH never beats /usr/bin; a profile's PATH is taken as is."""
    bin_dir, shims = env.home / ".local/bin", env.home / "shims"
    for d, name in ((bin_dir, "mytool"), (shims, "sh")):
        d.mkdir(parents=True)
        (d / name).write_text("#!/bin/sh\necho from-" + d.name + "\n")
        (d / name).chmod(0o755)
    env.give(env.home)
    env.write_profile("paths", "command: [sh, -c, 'mytool; command -v sh; echo $PATH']\n")
    caller = {"PATH": f"{shims}:/usr/bin:/bin:{bin_dir}:.", "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "https_proxy": "http://p:1"}
    result = env.envbox("launch", "paths", env=caller)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["from-bin", "/usr/bin/sh", f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{shims}:{bin_dir}"]
    env.write_profile("paths", "command: [sh, -c, 'echo $PATH $SSL_CERT_FILE $https_proxy']\nenv: {PATH: /usr/bin:/bin}\n")
    result = env.envbox("launch", "paths", env=caller)
    assert result.stdout.split() == ["/usr/bin:/bin", "/etc/ssl/certs/ca-certificates.crt", "http://p:1"]


def test_app_runs_as_the_caller_with_no_new_privs(env):
    env.write_profile("ids", "command: [sh, -c, 'id -u; grep NoNewPrivs /proc/self/status']\n")
    result = env.envbox("launch", "ids")
    assert result.returncode == 0, result.stderr
    uid, nnp = result.stdout.splitlines()
    assert int(uid) == env.uid
    assert nnp.split() == ["NoNewPrivs:", "1"]


def test_usr_is_read_only_and_host_untouched(env):
    prefix = fake_prefix(env, "prefix", "x")
    env.write_profile("ro", f"command: [sh]\ntools:\n  python: {{dir: {prefix}}}\n")
    result = env.envbox("launch", "ro", "--", "-c", "touch /usr/bin/envbox-was-here 2>&1; echo rc=$?")
    assert "rc=1" in result.stdout
    assert "Read-only file system" in result.stdout or "Permission denied" in result.stdout
    assert not os.path.exists("/usr/bin/envbox-was-here")


def test_mount_table_unchanged_after_launches_and_sigkill(env):
    before = mountinfo_lines()
    env.write_profile("m", f"command: [sh]\ntools:\n  python: {{host: {HOST_PY3}}}\n")
    assert env.envbox("launch", "m", "--", "-c", "exit 0").returncode == 0
    lock = env.home / "lockfile"
    proc = env.envbox_popen(
        "launch", "m", "--", "-c", f"sleep 300 & flock {lock} sleep 300 & sleep 0.2; echo started; wait",
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "started"
    tree = _descendants(proc.pid)
    assert len(tree) >= 4, tree  # relay, init, the app's shell and its background jobs
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_gone(tree, timeout=2)
    free = subprocess.run(["flock", "-n", str(lock), "true"], timeout=10)
    assert free.returncode == 0, "the app's lock must be released once envbox is killed"
    assert mountinfo_lines() == before


def _descendants(pid: int) -> list[int]:
    rows = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for row in rows:
        if row.strip():
            p, pp = map(int, row.split())
            children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a slow host init to reap it is dead for our purposes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {pids} outlived envbox")


@pytest.mark.parametrize(
    "script,code",
    [("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", 143), ("kill -INT $$", 130), ("kill -SEGV $$", 139)],
)
def test_exit_codes_pass_through(env, script, code):
    env.write_profile("codes", "command: [sh, -c]\n")
    result = env.envbox("launch", "codes", "--", script)
    assert result.returncode == code, result.stderr
    no_traceback(result)


def test_command_not_found_is_127_and_not_executable_is_126(env):
    env.write_profile("bad", "command: [no-such-program-xyz]\n")
    result = env.envbox("launch", "bad")
    assert result.returncode == 127
    assert result.stderr.splitlines()[0] == "envbox: no-such-program-xyz: command not found"
    assert result.stderr.splitlines()[1].startswith("hint: ")
    script = env.home / "not-exec.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    env.give(script)
    result = env.envbox("run", "--profile", "bad", "--", str(script))
    assert result.returncode == 126
    assert "not executable" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signals_to_envbox_reach_the_app_once(env, sig, code):
    log = env.home / "got"
    script = env.home / "trap.sh"
    name = signal.Signals(sig).name[3:]
    script.write_text(
        f"#!/bin/sh\ntrap 'echo {name} >> {log}; exit {code}' {name}\necho ready\nwhile :; do sleep 0.05; done\n"
    )
    script.chmod(0o755)
    env.give(env.home)
    env.write_profile("sig", "command: [sh]\n")
    proc = env.envbox_popen("run", "--profile", "sig", "--", str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    assert log.read_text().splitlines() == [name], "the app must get the signal exactly once"
    assert "Traceback" not in err


def test_app_without_handlers_dies_from_sigterm(env):
    env.write_profile("plain", "command: [sh, -c, 'echo ready; exec sleep 30']\n")
    proc = env.envbox_popen("launch", "plain", stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == 143


def test_stdin_and_stdout_pass_through(env):
    env.write_profile("cat", "command: [cat]\n")
    result = env.envbox("launch", "cat", input="line one\nline two\n")
    assert result.returncode == 0
    assert result.stdout == "line one\nline two\n"


def test_app_cannot_change_envbox_state(env):
    """Profiles, trust records, the store and cached plans are read-only inside a launch."""
    env.write_profile("meddle", f"command: [sh, -c]\ntools:\n  python: {{host: {HOST_PY3}}}\n")
    assert env.envbox("launch", "meddle", "--", "true").returncode == 0  # builds a layer, caches the plan
    targets = [env.user_profiles / "meddle.yaml", env.store, env.home / ".cache" / "envbox"]
    before = {t: sorted(os.listdir(t)) if t.is_dir() else t.read_bytes() for t in targets}
    script = "; ".join(
        f"(echo x >> {env.user_profiles}/meddle.yaml; touch {env.user_profiles}/new.yaml; "
        f"mkdir {env.store}/evil; touch {env.home}/.cache/envbox/evil) 2>/dev/null"
        for _ in range(1)
    ) + f"; touch {env.home}/allowed && echo done"
    result = env.envbox("launch", "meddle", "--", script)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    after = {t: sorted(os.listdir(t)) if t.is_dir() else t.read_bytes() for t in targets}
    assert after == before
    assert (env.home / "allowed").exists(), "the rest of the home directory stays writable"


def test_legacy_mount_path_stacks_layers_whose_paths_do_not_fit_one_page(env):
    """Kernels before 6.8 (Debian 12's 6.1) take the overlay's layers as one mount(2) option
    string, cut at 4095 bytes: 60 layers with 130-byte paths (7.8 KB), one with a ':' in its
    name, still stack (named by descriptor), and /usr is mounted once (VM case D3)."""
    tools = []
    for i in range(60):
        prefix = env.base / (("p" * 120) + (":" if i == 7 else "") + f"{i:03d}")
        (prefix / "bin").mkdir(parents=True)
        script = prefix / "bin" / f"tool{i}"
        script.write_text(f"#!/bin/sh\necho tool{i}\n")
        script.chmod(0o755)
        tools.append(f"  tool{i}: {{dir: '{prefix}'}}")
    env.write_profile("long", "command: [sh, -c]\ntools:\n" + "\n".join(tools) + "\n")
    before = mountinfo_lines()
    result = env.envbox("launch", "long", "--", "tool0; tool7; tool59; grep -c ' /usr ' /proc/self/mountinfo",
                        env={"ENVBOX_SANDBOX_LEGACY_MOUNT": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tool0", "tool7", "tool59", "1"]
    assert mountinfo_lines() == before


def test_a_umask_of_002_keeps_envbox_working_and_reaches_the_app(env):
    """User private groups (a Debian 13 login) come with umask 002: what envbox makes must still
    pass its own privacy checks on the next run (the store, the plan cache: the warm launch is
    the fast path), and the app still gets the caller's 002."""
    prefix = fake_prefix(env, "prefix", "python-layer")
    env.write_profile("um", f"command: [sh, -c]\ntools:\n  python: {{dir: {prefix}}}\n")
    under_002 = lambda *args, **kw: env.cmd(["sh", "-c", 'umask 002; exec "$@"', "sh", envbox_bin(), *args], **kw)
    first = under_002("launch", "um", "--", "umask; /usr/bin/python hi")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["0002", "python-layer", "hi"]
    warm = under_002("launch", "um", "--", "umask", env={"ENVBOX_TRACE": "1"})
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.split() == ["0002"] and "fast path (cached plan)" in warm.stderr, warm.stderr
    for args in (("layers",), ("gc",), ("build", "um")):
        done = under_002(*args)
        assert done.returncode == 0, (args, done.stderr)
    no_traceback(warm)
