"""Run a helper program (apt-get, dpkg-deb, patchelf, zstd, update-desktop-database, a layer's
python): with a timeout, in a process group of its own that is killed whole when the time is
up, and with its real error (the first meaningful line of its output) for the message.
Stdlib only.

Every program envbox runs while preparing a launch goes through run() (or popen() for one
that streams), so none can hang a build forever (apt-get against a mirror that accepts and
never answers) and none has its "No space left on device" reported as something else.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess

# Seconds; generous for a slow mirror, far from "forever". ENVBOX_HELPER_TIMEOUT overrides
# them all (tests, or a very slow link).
DEFAULT_TIMEOUT = 600.0
TIMEOUT_VAR = "ENVBOX_HELPER_TIMEOUT"

# OS errors that are the real cause wherever they appear in a helper's output.
_CAUSES = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOMEM, errno.EIO, errno.EMFILE, errno.ENFILE))
# Lines that are progress or warnings, never the error.
_NOISE = ("W:", "N:", "Get:", "Hit:", "Ign:", "Reading ", "Fetched ", "Building ", "Done")
_ERRORS = ("E:", "Err:", "error:", "Error:", "ERROR:", "fatal:", "dpkg-deb: error:", "dpkg: error:")


class HelperFailed(Exception):
    """A helper could not run, exited non-zero or timed out; str() is one line."""

    def __init__(self, program: str, reason: str, *, returncode: int | None = None, timed_out: bool = False, output: str = ""):
        super().__init__(f"{program}: {reason}")
        self.program, self.reason, self.returncode, self.timed_out, self.output = program, reason, returncode, timed_out, output


def timeout(default: float = DEFAULT_TIMEOUT) -> float:
    value = os.environ.get(TIMEOUT_VAR)
    try:
        return float(value) if value else default
    except ValueError:
        return default


def first_meaningful_line(text: str) -> str:
    """The line of a helper's output that says what went wrong: one naming an OS error
    (ENOSPC, EDQUOT, EROFS...) first, then the first error line, then the first line that is
    not progress; at most 300 characters, one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for test in (
        lambda line: any(cause in line for cause in _CAUSES),
        lambda line: line.startswith(_ERRORS),
        lambda line: not line.startswith(_NOISE),
    ):
        for line in lines:
            if test(line):
                return line[:300]
    return ""


def local_cause(line: str) -> bool:
    """Whether a helper's error line names a local cause (a full disk, a quota, a read-only
    file system...), which no retry against the network fixes."""
    return any(cause in line for cause in _CAUSES)


def popen(argv: list[str], *, env=None, timeout_s: float | None = None) -> subprocess.Popen:
    """Start a helper whose stdout the caller streams (binary pipes). Its process group is
    killed when timeout_s passes; then `proc.timed_out` is True. Call finish(proc) after."""
    import threading

    limit = timeout() if timeout_s is None else timeout_s
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise HelperFailed(os.path.basename(argv[0]), "not installed (not found on PATH)") from None
    proc.timed_out = False

    def expire() -> None:
        proc.timed_out = True
        _kill_group(proc)

    proc.timer = threading.Timer(limit, expire)
    proc.timer.daemon = True
    proc.timer.start()
    return proc


def finish(proc: subprocess.Popen) -> None:
    """Stop popen()'s timer and make sure the group is gone (a no-op after a normal exit)."""
    proc.timer.cancel()
    if proc.poll() is None:
        _kill_group(proc)
        proc.wait()


def run(argv: list[str], *, env=None, timeout_s: float | None = None, stdout=subprocess.PIPE, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    """Run argv to completion (stdin /dev/null, stderr captured, text). Raises HelperFailed when
    it cannot start, runs longer than timeout_s (its whole process group is killed first) or,
    with check, exits non-zero, naming the first meaningful line of its output."""
    limit = timeout() if timeout_s is None else timeout_s
    program = os.path.basename(argv[0])
    try:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
            text=True, errors="replace", start_new_session=True,
        )
    except FileNotFoundError:
        raise HelperFailed(program, "not installed (not found on PATH)") from None
    except OSError as exc:
        raise HelperFailed(program, f"cannot start: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise HelperFailed(program, f"did not finish within {limit:g} s and was stopped", timed_out=True, output=(out or "") + (err or "")) from None
    except BaseException:  # Ctrl-C, or our own error: the helper must not outlive us
        _kill_group(proc)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and proc.returncode != 0:
        text = (err or "") + "\n" + (out if isinstance(out, str) else "")
        reason = first_meaningful_line(text) or f"exit status {proc.returncode}"
        raise HelperFailed(program, reason, returncode=proc.returncode, output=text)
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    # start_new_session: the helper leads its own group, with everything it started (apt's
    # http methods): killing only the helper would leave them holding our pipes open.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
