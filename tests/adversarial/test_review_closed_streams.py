"""Review class 5: closed standard streams. Started with stdin, stdout or stderr closed (cron,
daemons, `>&-`), envbox behaves as if the stream were /dev/null for its own output, gives the
app exactly the streams it was given (a closed one closed) and keeps the exit codes; on the
warm (cached plan) and the cold (full CLI) path, as root and rootless."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import envbox_bin, no_traceback

REDIRECT = {0: "<&-", 1: ">&-", 2: "2>&-"}


def app_profile(env, name="seer") -> Path:
    """The app writes, for fds 0-2, whether it has them open, then exits 7."""
    seen = env.home / "seen"
    # Tested before any redirection of the shell's own: `[` is a builtin, /proc/self the shell.
    script = f"r=; for fd in 0 1 2; do if [ -e /proc/self/fd/$fd ]; then r=$r$fd-open,; else r=$r$fd-closed,; fi; done; echo $r > {seen}; exit 7"
    env.write_profile(name, f"command: [sh, -c, {script!r}]\n".replace("'", "\""))
    return seen


def closed_run(env, fd: int, *args: str, extra_env=None):
    """envbox ARGS run by a shell with fd closed (exec, so envbox inherits it closed)."""
    line = f'exec "$0" "$@" {REDIRECT[fd]}'
    return env.cmd(["/bin/sh", "-c", line, envbox_bin(), *args], env=extra_env or {})


@pytest.mark.parametrize("path", ["cold", "warm"])
@pytest.mark.parametrize("fd", [0, 1, 2])
def test_app_sees_the_closed_stream_and_its_exit_code_is_kept(env, fd, path):
    seen = app_profile(env)
    extra = {}
    if path == "warm":
        first = env.envbox("launch", "seer")
        assert first.returncode == 7, first.stderr
        plans = Path(env.vars["XDG_CACHE_HOME"]) / "envbox" / "plans"
        assert any(plans.iterdir()), "the first launch wrote no cached plan"
        if fd != 2:
            extra["ENVBOX_TRACE"] = "1"
    else:
        extra["ENVBOX_NO_FAST"] = "1"  # the full CLI (typer), as on a first launch
    seen.unlink(missing_ok=True)
    result = closed_run(env, fd, "launch", "seer", extra_env=extra)
    assert result.returncode == 7, (result.returncode, result.stderr)
    no_traceback(result)
    want = "".join(f"{n}-{'closed' if n == fd else 'open'}," for n in (0, 1, 2))
    assert seen.read_text().strip() == want
    if path == "warm" and fd != 2:
        assert "fast path" in result.stderr, result.stderr
    if fd != 2:
        assert "Error" not in result.stderr and "AttributeError" not in result.stderr, result.stderr


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_envbox_errors_keep_their_exit_code(env, fd):
    """envbox's own failure (no such profile): 125, the message on stderr unless it is closed."""
    result = closed_run(env, fd, "launch", "no-such-profile")
    assert result.returncode == 125, (result.returncode, result.stderr)
    no_traceback(result)
    if fd != 2:
        assert result.stderr.startswith("envbox: "), result.stderr
        assert "no-such-profile" in result.stderr


@pytest.mark.parametrize("fd", [1, 2])
def test_output_commands_with_a_closed_stream(env, fd):
    """Commands that only print (list, plan, ps) exit 0 with their stream closed."""
    app_profile(env)
    for args in (["list"], ["plan", "seer"], ["ps"], ["--help"]):
        result = closed_run(env, fd, *args)
        assert result.returncode == 0, (args, result.returncode, result.stderr)
        no_traceback(result)


def test_run_with_all_three_closed(env):
    seen = app_profile(env)
    line = 'exec "$0" "$@" <&- >&- 2>&-'
    for extra in ({"ENVBOX_NO_FAST": "1"}, {}):
        result = env.cmd(["/bin/sh", "-c", line, envbox_bin(), "launch", "seer"], env=extra)
        assert result.returncode == 7
        assert seen.read_text().strip() == "0-closed,1-closed,2-closed,"


def test_sandbox_close_fd_option_is_validated():
    from envbox.runtime import sandbox

    ctx = sandbox.parse(["--close-fd", "1", "--close-fd", "2", "--", "true"])
    assert ctx.close_fds == [1, 2]
    for bad in ("3", "-1", "x"):
        with pytest.raises(sandbox.SandboxFailure, match="--close-fd takes 0, 1 or 2"):
            sandbox.parse(["--close-fd", bad, "--", "true"])


def test_reopen_closed_streams_in_a_child():
    """main.reopen_closed_streams puts /dev/null on exactly the closed fds and reports them."""
    import subprocess
    import sys

    code = (
        "import os, sys; from envbox.main import reopen_closed_streams as r; c = r(); "
        "print(c, os.readlink('/proc/self/fd/1'), file=sys.stderr)"
    )
    repo = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(["/bin/sh", "-c", f'exec "$0" -c "$1" >&- <&-', sys.executable, code],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo})
    assert result.stderr.strip() == "(0, 1) /dev/null", result.stderr
