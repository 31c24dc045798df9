"""`envbox enter` for real, as root and as the test user: a command joins a running launch's
user (rootless), mount and pid namespaces, its cgroup, its environment and working directory."""

from __future__ import annotations

import json
import os
import time


from conftest import no_traceback

PROFILE = "command: [sleep, '120']\nenv: {GREETING: from-profile}\ntools:\n  python: {host: /usr/bin/python3.11}\n"


def start(env, name: str = "longrun", text: str = PROFILE):
    env.write_profile(name, text)
    proc = env.envbox_popen("launch", name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = json.loads(env.envbox("ps", "--json").stdout or "[]")
        mine = [r for r in rows if r["pid"] == proc.pid]
        if mine and _app_pid(proc.pid):
            return proc, mine[0]
        assert proc.poll() is None, "the launch ended early"
        time.sleep(0.1)
    raise AssertionError("the launch did not start")


def _descendants(pid: int) -> list[int]:
    out, queue = [], [pid]
    while queue:
        p = queue.pop(0)
        try:
            kids = open(f"/proc/{p}/task/{p}/children").read().split()
        except OSError:
            kids = []
        out += [int(k) for k in kids]
        queue += [int(k) for k in kids]
    return out


def _app_pid(supervisor: int) -> int | None:
    """The app (sleep) as the host sees it."""
    for pid in _descendants(supervisor):
        try:
            if open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0] == b"sleep":
                return pid
        except OSError:
            pass
    return None


def test_enter_sees_the_apps_layers_pid_namespace_and_env(env):
    proc, row = start(env)
    assert row["enter"] == "envbox enter longrun"
    ps = env.envbox("ps")
    assert "envbox enter longrun" in ps.stdout, ps.stdout
    app = _app_pid(proc.pid)
    script = ("/usr/bin/python --version; echo GREETING=$GREETING; echo PROFILE=$ENVBOX_PROFILE; "
              "tr '\\0' ' ' < /proc/2/cmdline; echo; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; "
              "cat /proc/self/status | grep NoNewPrivs; pwd; id -u")
    result = env.envbox("enter", "longrun", "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    lines = result.stdout.splitlines()
    assert lines[0] == "Python 3.11.2" or lines[0].startswith("Python 3.11"), lines
    assert not os.path.lexists("/usr/bin/python"), "the host has no /usr/bin/python: the layer showed it"
    assert lines[1] == "GREETING=from-profile" and lines[2] == "PROFILE=longrun"
    assert lines[3].strip() == "sleep 120", "pid 2 of the namespace is the app (its init is pid 1)"
    assert lines[4] == os.readlink(f"/proc/{app}/ns/pid")
    assert lines[5] == os.readlink(f"/proc/{app}/ns/mnt")
    assert lines[6].split() == ["NoNewPrivs:", "1"]
    assert lines[7] == str(env.home)
    assert lines[8] == str(env.uid)
    if env.mode == "rootless":
        assert os.readlink(f"/proc/{app}/ns/user") != os.readlink("/proc/self/ns/user")
    # By the app's host pid too; the command's exit code passes through.
    by_pid = env.envbox("enter", str(app), "--", "sh", "-c", "exit 7")
    assert by_pid.returncode == 7, by_pid.stderr
    proc.kill()
    proc.wait(timeout=10)


def test_default_command_is_a_shell_reading_stdin(env):
    proc, _ = start(env)
    result = env.envbox("enter", "longrun", input="echo in-shell $ENVBOX_PROFILE; /usr/bin/python -c 'print(6*7)'\n",
                        env={"SHELL": "/bin/sh"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["in-shell longrun", "42"]
    proc.kill()
    proc.wait(timeout=10)


def test_two_launches_of_a_profile_are_entered_by_pid(env):
    first, _ = start(env)
    second, _ = start(env)
    rows = {r["pid"]: r for r in json.loads(env.envbox("ps", "--json").stdout)}
    assert rows[first.pid]["enter"] == f"envbox enter {first.pid}"
    assert rows[second.pid]["enter"] == f"envbox enter {second.pid}"
    ambiguous = env.envbox("enter", "longrun", "--", "true")
    assert ambiguous.returncode == 125 and ambiguous.stderr.startswith("envbox: 2 launches of longrun are running")
    ns = env.envbox("enter", str(second.pid), "--", "readlink", "/proc/self/ns/pid")
    assert ns.stdout.strip() == os.readlink(f"/proc/{_app_pid(second.pid)}/ns/pid")
    for p in (first, second):
        p.kill()
        p.wait(timeout=10)


def test_a_process_that_is_not_a_launch_is_refused(env):
    plain = env.popen(["sleep", "60"])
    for target in (str(plain.pid), "1", "nosuchprofile", "99999999"):
        result = env.envbox("enter", target, "--", "true")
        assert result.returncode == 125, result
        no_traceback(result)
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith("envbox: ") and lines[1].startswith("hint: "), lines
    assert "is not an envbox launch" in env.envbox("enter", str(plain.pid)).stderr
    plain.kill()
    plain.wait()


def test_enter_joins_the_launch_cgroup(root_env):
    proc, row = start(root_env, "capped", PROFILE + "limits: {memory: 256M, pids: 64}\n")
    assert row["cgroups"], row
    result = root_env.envbox("enter", "capped", "--", "cat", "/proc/self/cgroup")
    assert result.returncode == 0, result.stderr
    for path in row["cgroups"]:
        tail = path.split("/", 4)[-1] if path.startswith("/sys/fs/cgroup/") else path
        assert any(line.endswith("/" + os.path.basename(tail)) for line in result.stdout.splitlines()), (path, result.stdout)
    proc.kill()
    proc.wait(timeout=10)


def test_interactive_shell_on_a_terminal(env):
    """On a terminal the shell gets the job control it expects: Ctrl-C stops the command it
    runs, not the shell; its exit code is envbox's."""
    import pty
    import select

    from conftest import envbox_bin

    proc, _ = start(env)
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the env's user, then run envbox enter
        try:
            if env.uid:
                os.setgroups([])
                os.setgid(env.gid)
                os.setuid(env.uid)
            os.chdir(str(env.home))
            os.execve(envbox_bin(), [envbox_bin(), "enter", "longrun"], {**env.vars, "SHELL": "/bin/bash"})
        finally:
            os._exit(127)
    out = b""

    def read_until(marker: bytes, timeout: float = 20) -> None:
        nonlocal out
        end = time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    return

    os.write(fd, b"echo ready-$ENVBOX_PROFILE\n")
    read_until(b"ready-longrun\r\n")
    os.write(fd, b"/usr/bin/python --version; sleep 30; echo after-sleep\n")
    read_until(b"Python 3.11")
    time.sleep(0.5)
    os.write(fd, b"\x03")  # Ctrl-C: interrupts the sleep (the shell runs `echo after-sleep` next)
    read_until(b"after-sleep\r\n", timeout=10)
    os.write(fd, b"exit 3\n")
    read_until(b"\xff", timeout=5)  # until EOF
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace")
    assert "after-sleep" in text, text
    assert os.waitstatus_to_exitcode(status) == 3, text
    proc.kill()
    proc.wait(timeout=10)
