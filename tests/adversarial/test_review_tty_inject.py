"""Review class 10: an app must not type into the caller's terminal (TIOCSTI, TIOCLINUX).

The sandbox installs a seccomp filter before exec that makes ioctl(TIOCSTI) and
ioctl(TIOCLINUX) fail with EPERM, comparing only the low 32 bits of the request as the kernel
does (so TIOCSTI | 1 << 32 is refused too). Job control and Ctrl-C keep working.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time

import pytest

from conftest import envbox_bin

PROFILE = "command: [/usr/bin/python3.11]\ntools:\n  python: {host: /usr/bin/python3.11}\n"

INJECT = r"""
import ctypes, os, platform
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_IOCTL = {"x86_64": 16, "aarch64": 29}[platform.machine()]
c = ctypes.c_char(b"\n")
for name, req in (("TIOCSTI", 0x5412), ("TIOCSTI|1<<32", 0x5412 | (1 << 32)), ("TIOCSTI|0xdead<<32", 0x5412 | (0xDEAD << 32)), ("TIOCLINUX", 0x541C)):
    r = libc.syscall(SYS_IOCTL, 0, ctypes.c_ulong(req), ctypes.byref(c))
    print(name, "ok" if r == 0 else os.strerror(ctypes.get_errno()), flush=True)
# Job control on the same terminal still works: what a shell does for a job (its own process
# group, made the terminal's foreground group with TIOCSPGRP).
import signal
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
os.setpgid(0, 0)
os.tcsetpgrp(0, os.getpgrp())
print("pgrp", "ok" if os.tcgetpgrp(0) == os.getpgrp() else "not-foreground", flush=True)
"""

SIGINT_APP = r"""
import os, signal, time
signal.signal(signal.SIGINT, lambda *a: (os.write(1, b"got SIGINT\n"), os._exit(7)))
os.write(1, b"ready\n")
time.sleep(60)
print("no signal", flush=True)
"""


def _on_pty(env, argv: list[str], *, send: bytes | None = None, after: bytes = b"ready\r\n") -> tuple[str, int]:
    """Run argv as env's user in a new session whose controlling terminal is a fresh pty."""
    master, slave = os.openpty()

    def ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = env.popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=ctty)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every slave side is closed
                break
            if not data:
                break
            out += data
        if send is not None and not sent and after in out:
            os.write(master, send)
            sent = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(master)
    return out.decode(errors="replace").replace("\r\n", "\n"), proc.returncode


def _script(env, name: str, text: str) -> str:
    path = env.base / name
    path.write_text(text)
    os.chmod(path, 0o644)
    return str(path)


def test_tiocsti_and_tioclinux_are_refused_high_bits_too(env):
    env.write_profile("tty", PROFILE)
    script = _script(env, "inject.py", INJECT)
    assert env.envbox("build", "tty").returncode == 0
    out, code = _on_pty(env, [envbox_bin(), "launch", "tty", "--", script])
    assert code == 0, out
    lines = [l for l in out.splitlines() if l.split(" ")[0] in ("TIOCSTI", "TIOCSTI|1<<32", "TIOCSTI|0xdead<<32", "TIOCLINUX", "pgrp")]
    assert lines == [
        "TIOCSTI Operation not permitted",
        "TIOCSTI|1<<32 Operation not permitted",
        "TIOCSTI|0xdead<<32 Operation not permitted",
        "TIOCLINUX Operation not permitted",
        "pgrp ok",
    ], out


def test_without_envbox_the_same_app_can_inject(env):
    """The control: the host allows TIOCSTI on one's own terminal, so the test above can fail."""
    with open("/proc/sys/dev/tty/legacy_tiocsti") as f:
        if f.read().strip() != "1":
            pytest.skip("this kernel refuses TIOCSTI to everyone (dev.tty.legacy_tiocsti = 0)")
    script = _script(env, "inject.py", INJECT)
    out, code = _on_pty(env, ["/usr/bin/python3.11", script])
    assert "TIOCSTI ok" in out and "TIOCSTI|1<<32 ok" in out, out


def test_ctrl_c_on_the_terminal_still_reaches_the_app(env):
    env.write_profile("tty", PROFILE)
    script = _script(env, "sigint.py", SIGINT_APP)
    assert env.envbox("build", "tty").returncode == 0
    out, code = _on_pty(env, [envbox_bin(), "launch", "tty", "--", script], send=b"\x03")
    assert "got SIGINT" in out and "no signal" not in out, out
    assert code == 7, out


def test_plan_names_the_filter_and_its_option(root_env):
    env = root_env
    env.write_profile("tty", PROFILE)
    assert env.envbox("build", "tty").returncode == 0
    out = env.envbox("plan", "tty").stdout
    assert "seccomp  ioctl TIOCSTI and TIOCLINUX fail with EPERM" in out and "(--block-tty-inject)" in out
    command = out.split("command  ", 1)[1]
    assert " --block-tty-inject " in command


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_filter_program_shape(machine):
    """Pure: every ABI of the machine is checked, and only the request's low word is loaded."""
    import struct

    from envbox.runtime import sandbox

    prog = sandbox.tty_filter_program(machine)
    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    loads = {k for code, _, _, k in insns if code == 0x20}
    assert loads == {0, 4, 24}  # nr, arch, args[1] low word (little endian)
    arches = {k for code, _, _, k in insns if code == 0x15 and k > 0xFFFF and k & 0x40000000 and k in (0xC000003E, 0x40000003, 0xC00000B7, 0x40000028)}
    assert arches == {a for a, _ in sandbox.IOCTL_NR[machine]}
    with pytest.raises(sandbox.SandboxFailure):
        sandbox.tty_filter_program("mips")


def test_job_control_in_an_interactive_shell_still_works(env):
    """bash -i under envbox: a background job, fg, Ctrl-Z (stopped), fg again, Ctrl-C (130)."""
    env.write_profile("sh", "command: [bash, --norc, -i]\n")
    master, slave = os.openpty()

    def ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = env.popen([envbox_bin(), "launch", "sh"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                     preexec_fn=ctty, env={"TERM": "dumb"})
    os.close(slave)
    out = b""

    def pump(until: bytes, timeout: float = 30, start: int = 0) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while until not in out[start:] and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    return

    try:
        pump(b"bash-")  # the prompt
        # Each step waits for its own output; a pause lets bash hand the terminal to a job
        # before the next key (typed-ahead keys would go to bash itself).
        steps = [
            (b"sleep 30 &\n", b"[1] ", 0), (b"fg\n", b"sleep 30\r\n", 1.0), (b"\x1a", b"Stopped", 0),
            (b"jobs; echo jobs-done\n", b"jobs-done\r\n", 0), (b"fg\n", b"sleep 30\r\n", 1.0),
            (b"\x03", b"^C", 0), (b"echo status=$?\n", b"status=130", 0), (b"exit 0\n", b"exit", 0),
        ]
        for send, expect, pause in steps:
            mark = len(out)
            os.write(master, send)
            pump(expect, start=mark)
            assert expect in out[mark:], (send, out.decode(errors="replace"))
            time.sleep(pause)
            pump(b"\0", timeout=pause)  # collect what came meanwhile
        assert b"Stopped" in out and b"status=130" in out
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pump(b"\0", timeout=1)
            raise AssertionError(f"envbox did not exit: {out.decode(errors='replace')}") from None
    finally:
        os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
