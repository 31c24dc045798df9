"""envbox's error on the desktop, when nobody reads its standard error.

An app started from a menu entry has its stderr in a log file or nowhere: a launch envbox
refuses (an outside instance holds the app's lock, a limit cannot be enforced, a layer cannot
be built) would end without a word. When envbox runs from a desktop entry (GLib's launchers
set GIO_LAUNCHED_DESKTOP_FILE; ENVBOX_NOTIFY=1 asks for it anywhere) and stderr is not a
terminal, envbox's own lines on stderr are kept, and a failure posts its error and hint as a
desktop notification (notify-send, or gdbus to org.freedesktop.Notifications). The lines
still go to stderr as always. Stdlib only.
"""

from __future__ import annotations

import os
import shutil
import sys

EXPIRE_MS = 15000


def wanted(environ) -> bool:
    if environ.get("ENVBOX_NOTIFY") == "0":
        return False
    if not (environ.get("GIO_LAUNCHED_DESKTOP_FILE") or environ.get("ENVBOX_NOTIFY") == "1"):
        return False
    try:
        return not os.isatty(2)
    except OSError:
        return True


class Tap:
    """sys.stderr, also keeping what envbox itself writes (the app writes to fd 2, not here)."""

    def __init__(self, stream):
        self._stream, self.text = stream, []

    def write(self, text: str) -> int:
        self.text.append(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def install(environ=os.environ) -> Tap | None:
    if not wanted(environ):
        return None
    tap = Tap(sys.stderr)
    sys.stderr = tap
    return tap


def error_of(text: str) -> tuple[str, str] | None:
    """(summary, body) from envbox's stderr: its last error line and the hint after it;
    progress, warnings and notes are not errors."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if not line.startswith("envbox: ") or line.startswith(("envbox: warning:", "envbox: note:", "envbox: building ", "envbox: built ")):
            continue
        hints = [h.removeprefix("hint: ") for h in lines[i + 1:i + 3] if h.startswith("hint: ")]
        return line.removeprefix("envbox: "), "\n".join(hints)
    return None


def report(tap: Tap | None, code: int, environ=os.environ) -> None:
    """Post the error of a failed run (exit 125 or 2, envbox's own codes) as a notification."""
    if tap is None or code not in (2, 125):
        return
    found = error_of("".join(tap.text))
    if found is None:
        return
    post("envbox: " + found[0], found[1], environ)


def post(summary: str, body: str, environ=os.environ) -> bool:
    """One desktop notification; False when no program could deliver it."""
    from envbox import helper

    path = "/usr/local/bin:/usr/bin:/bin"
    notify_send, gdbus = shutil.which("notify-send", path=path), shutil.which("gdbus", path=path)
    if notify_send:
        argv = [notify_send, "--app-name=envbox", f"--expire-time={EXPIRE_MS}", "--", summary, body]
    elif gdbus:
        quote = lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"  # noqa: E731 (GVariant text)
        argv = [gdbus, "call", "--session", "--dest", "org.freedesktop.Notifications",
                "--object-path", "/org/freedesktop/Notifications", "--method", "org.freedesktop.Notifications.Notify",
                # typed GVariant text: gdbus cannot introspect a notification daemon that is not running yet
                "'envbox'", "uint32 0", "''", quote(summary), quote(body), "@as []", "@a{sv} {}", f"int32 {EXPIRE_MS}"]
    else:
        return False
    try:
        helper.run(argv, env=dict(environ), timeout_s=5, check=True)
    except helper.HelperFailed:
        return False
    return True
