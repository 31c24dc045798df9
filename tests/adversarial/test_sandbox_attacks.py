"""Attacks on the sandbox and the process model: propagation, privileges, env, exit codes, signals."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import time

import pytest

from conftest import envbox_bin, mountinfo_lines, no_traceback

PY = "command: [sh, -c]\ntools:\n  python: {host: /usr/bin/python3.11}\n"


def test_mounts_never_propagate_to_a_shared_parent(root_env):
    """26: with / made shared first, nothing envbox mounts appears outside, during, after, or after SIGKILL."""
    env = root_env
    env.write_profile("m", PY)
    assert env.envbox("launch", "m", "--", "true").returncode == 0
    # An outer namespace whose / is shared: any mount that propagated would show in it.
    script = (
        "mount --make-rshared / && "
        f"{envbox_bin()} launch m -- 'echo started; sleep 30' & "
        "sleep 1.5; grep -c ' /usr ' /proc/self/mountinfo; "
        "kill -9 $!; wait; grep -c ' /usr ' /proc/self/mountinfo; "
        f"{envbox_bin()} launch m -- true; grep -c ' /usr ' /proc/self/mountinfo"
    )
    before = mountinfo_lines()
    result = env.cmd(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script])
    counts = [line for line in result.stdout.splitlines() if line.isdigit()]
    assert counts == ["0", "0", "0"], result.stdout + result.stderr
    assert mountinfo_lines() == before


def test_writes_to_usr_never_reach_the_store_or_host(env):
    """27"""
    env.write_profile("w", PY)
    assert env.envbox("launch", "w", "--", "true").returncode == 0
    before = sorted(str(p) for p in env.store.rglob("*"))
    result = env.envbox("launch", "w", "--", "echo x > /usr/bin/python 2>&1; echo x > /usr/envbox-new 2>&1; rm -f /usr/bin/python3 2>&1; echo done")
    assert result.stdout.strip().endswith("done")
    assert sorted(str(p) for p in env.store.rglob("*")) == before
    assert not os.path.exists("/usr/envbox-new") and os.path.exists("/usr/bin/python3")


def test_privileges_no_new_privs_nosuid_nodev_no_caps(env):
    """28"""
    env.write_profile("p", PY)
    result = env.envbox("launch", "p", "--", "grep -E 'NoNewPrivs|CapEff|CapPrm' /proc/self/status; grep ' /usr ' /proc/self/mountinfo")
    assert result.returncode == 0, result.stderr
    status = dict(line.split(":\t") for line in result.stdout.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"] == "1"
    if env.mode == "rootless":
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    usr = [line for line in result.stdout.splitlines() if " /usr " in line][-1]
    options = usr.split(" - ")[0].split()[5].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options), usr


def test_setuid_binaries_do_not_gain_privilege(env):
    """28: with no_new_privs and nosuid, a setuid-root program runs without root."""
    if env.mode == "root":
        pytest.skip("root already has every privilege")
    env.write_profile("p", PY)
    result = env.envbox("launch", "p", "--", "su -c id root </dev/null 2>&1; echo rc=$?")
    assert "uid=0" not in result.stdout


def test_symlink_planted_at_runtime_dir_is_not_followed(env):
    """29: the app (or another user) plants a symlink where envbox keeps its runtime records."""
    target = env.base / "elsewhere"
    target.mkdir()
    env.give(target)
    os.symlink(target, env.base / "run" / "envbox")  # $XDG_RUNTIME_DIR/envbox
    env.write_profile("p", PY)
    result = env.envbox("launch", "p", "--", "echo ran")
    assert result.returncode == 0 and result.stdout.strip() == "ran"
    assert os.listdir(target) == [], "nothing may be created through the symlink"


def test_profile_env_reaches_only_the_app_never_helpers(root_env, tmp_path):
    """30: LD_PRELOAD/PYTHONPATH/PATH from the profile or the caller never reach envbox or its helpers."""
    env = root_env
    marker = env.base / "pwned"
    evil = env.base / "evil"
    evil.mkdir()
    # A module that would run if envbox's own interpreter honoured PYTHONPATH.
    for name in ("json", "typer", "yaml", "os2", "marshal"):
        (evil / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    env.write_profile("p", "command: [sh, -c, 'echo $LD_PRELOAD $PYTHONPATH']\ntools:\n  python: {host: /usr/bin/python3.11}\n"
                      "env: {LD_PRELOAD: /nonexistent/evil.so, PYTHONPATH: /from-profile}\n")
    caller = {"PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "json.py"), "PYTHONHOME": "/nonexistent"}
    result = env.envbox("launch", "p", env=caller)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/nonexistent/evil.so", "/from-profile"]
    assert not marker.exists()
    result = env.envbox("plan", "p", env=caller)
    assert result.returncode == 0 and not marker.exists()


@pytest.mark.parametrize(
    "script,code",
    [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("exit 255", 255), ("kill -TERM $$", 143), ("kill -SEGV $$", 139), ("kill -KILL $$", 137)],
)
def test_exit_codes(env, script, code):
    """31"""
    env.write_profile("c", "command: [sh, -c]\n")
    result = env.envbox("launch", "c", "--", script)
    assert result.returncode == code
    assert "killed: memory limit" not in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGWINCH])
def test_each_signal_reaches_the_app_exactly_once(env, sig):
    """32"""
    name = signal.Signals(sig).name[3:]
    log = env.home / "log"
    script = env.home / "trap.sh"
    script.write_text(
        f"#!/bin/sh\ntrap 'echo {name} >> {log}' {name}\ntrap 'exit 0' USR2\necho ready\n"
        "while :; do sleep 0.05; done\n"
    )
    script.chmod(0o755)
    env.give(env.home)
    env.write_profile("s", "command: [sh]\n")
    proc = env.envbox_popen("run", "--profile", "s", "--", str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a second delivery, if there were one, would have arrived by now
    proc.send_signal(signal.SIGUSR2)
    out, err = proc.communicate(timeout=20)
    assert log.read_text().splitlines() == [name]
    assert proc.returncode == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err


def test_killing_the_shell_that_started_envbox_kills_the_app(root_env):
    """33: the user's terminal shell is SIGKILLed: the terminal hangs up on its foreground job,
    so the app and everything it started die, and a lock they held is free within 2 s."""
    env = root_env
    env.write_profile("s", "command: [sh, -c]\n")
    lock = env.home / "lock"
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.clear()
        os.environ.update(env.vars)
        os.execv("/bin/sh", ["sh", "-c", f"{envbox_bin()} launch s -- 'flock {lock} sleep 300 & echo started; wait'; echo after"])
    out = b""
    deadline = time.monotonic() + 30
    while b"started" not in out and time.monotonic() < deadline:
        out += os.read(fd, 1024)
    assert b"started" in out, out
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the app's lock is still held 2 s after its shell was killed")
    os.close(fd)


def test_a_deleted_working_directory_never_falls_back_to_another(env):
    """The app must not run somewhere else: `rm -rf *` in / instead of a removed directory."""
    env.write_profile("c", "command: [sh, -c]\n")
    gone = env.home / "gone"
    gone.mkdir()
    env.give(gone)
    script = f"cd {gone} && rmdir {gone} && exec \"$0\" launch c -- 'touch marker-$$; pwd'"
    result = env.cmd(["sh", "-c", script, envbox_bin()])
    assert result.returncode == 125, result.stdout + result.stderr
    assert "current directory no longer exists" in result.stderr
    assert not list(__import__("pathlib").Path("/").glob("marker-*"))
    no_traceback(result)


def test_signals_the_caller_ignored_stay_ignored(env):
    """nohup: an ignored SIGHUP must stay ignored for the app."""
    env.write_profile("c", "command: [sh, -c]\n")
    result = env.cmd(["nohup", envbox_bin(), "launch", "c", "--", "kill -HUP $$; echo survived"])
    assert result.returncode == 0 and "survived" in result.stdout, result.stdout + result.stderr


def test_a_script_without_a_shebang_runs_with_sh(env):
    script = env.home / "noshebang"
    script.write_text("echo ran-by-sh\n")
    script.chmod(0o755)
    env.give(env.home)
    env.write_profile("c", "command: [sh, -c]\n")
    result = env.envbox("run", "--profile", "c", "--", str(script))
    assert result.returncode == 0 and result.stdout.strip() == "ran-by-sh", result.stderr


def test_mounts_below_an_overlaid_directory_stay_visible(root_env):
    """A file bind-mounted into /etc (as container runtimes do) and a separate mount below /usr
    are carried over into the app's view, not hidden by the overlay."""
    env = root_env
    layer = env.base / "layer"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "marker").write_text("x")
    env.write_profile("m", f"command: [sh, -c]\ntools:\n  t: {{dir: {layer}}}\n")
    fake_hosts = env.base / "hosts"
    fake_hosts.write_text("10.9.8.7 envbox-test-host\n")
    # Everything happens in a private mount namespace: the host's /etc and /usr are untouched.
    script = (
        f"mount --bind {fake_hosts} /etc/hosts && mount -t tmpfs tmpfs /usr/local && touch /usr/local/inner && "
        f"{envbox_bin()} launch m -- 'grep -c envbox-test-host /etc/hosts; ls /usr/local; ls /usr/bin/marker'"
    )
    result = env.cmd(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    assert result.stdout.split() == ["1", "inner", "/usr/bin/marker"], result.stdout + result.stderr


def test_a_group_wide_signal_from_a_group_member_arrives_once(env):
    """timeout(1) kills its whole process group: the app must see SIGTERM once, not twice."""
    log = env.home / "log"
    script = env.home / "term.sh"
    script.write_text(f"#!/bin/sh\ntrap 'echo TERM >> {log}' TERM\nwhile :; do sleep 0.05; done\n")
    script.chmod(0o755)
    env.give(env.home)
    env.write_profile("s", "command: [sh]\n")
    # TERM to the group after 1 s; the app logs it and goes on; KILL to the group 2 s later.
    result = env.cmd(["timeout", "-k", "2", "1", envbox_bin(), "run", "--profile", "s", "--", str(script)])
    assert log.read_text().splitlines() == ["TERM"], result.stderr
