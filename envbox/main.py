"""The `envbox` entry point. Stdlib only: a cached plan launches without the full CLI."""

from __future__ import annotations

import os
import sys

LAUNCHER = """#!{python} -SI
# envbox's launcher, written by `python -m envbox.main --write-launcher`. -S skips site (the
# fast launch path must not pay for it); -I ignores PYTHON* variables and the user's site.
import sys
sys.path[:0] = {sites!r}
from envbox.main import main
main()
"""


def reopen_closed_streams() -> tuple[int, ...]:
    """Put /dev/null on each of fds 0, 1, 2 that envbox was started without (cron, daemons,
    `>&-`), so that nothing envbox opens later lands on them and its own messages go nowhere
    instead of failing; returns those fds, which the app gets closed again (sandbox
    --close-fd): it sees exactly the streams it was given."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # EBADF: not open
            closed.append(fd)
    for fd in closed:  # ascending: open() takes the lowest free number, which is fd itself
        null = os.open("/dev/null", os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        # Python made no stream object for a closed fd (sys.stdout is None): make one.
        stream = open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        setattr(sys, ("stdin", "stdout", "stderr")[fd], stream)
    return tuple(closed)


def private_umask(environ=os.environ) -> None:
    """envbox's own files and directories are never group- or world-writable: its checks refuse
    such a store, cache or trust record as not private. Under a umask like 002 (user private
    groups: a Debian 13 login) everything it made came out group-writable and was refused on
    the next run. envbox works under the caller's umask plus 022; the app it launches gets the
    caller's umask back (the sandbox restores it from ENVBOX_APP_UMASK before exec)."""
    caller = os.umask(0o022)
    os.umask(caller | 0o022)
    environ["ENVBOX_APP_UMASK"] = format(caller, "04o")


def main() -> None:
    private_umask()
    closed = reopen_closed_streams()
    argv = sys.argv[1:]
    tap = None
    if os.environ.get("GIO_LAUNCHED_DESKTOP_FILE") or os.environ.get("ENVBOX_NOTIFY"):
        from envbox import notify  # started from a menu: an error must not go unseen

        tap = notify.install()
    if argv[:1] in (["launch"], ["run"]):
        from envbox.runtime import plancache as fastpath

        code = fastpath.try_launch(argv, os.environ, closed_fds=closed)
        if code is not None:
            # Nothing is left to do: skip the interpreter's tear-down (a few ms of module
            # clean-up) between the app's exit and ours.
            sys.stdout.flush()
            sys.stderr.flush()
            if tap is not None:
                notify.report(tap, code)
            os._exit(code)
    from envbox.cli.commands import run_cli

    code = run_cli(argv, closed_fds=closed)
    if tap is not None:
        notify.report(tap, code)
    sys.exit(code)


def launcher_sites(imported_from: str, purelib: str) -> list[str]:
    """The import path of the launcher: the venv's site-packages, where pip installed envbox and
    its dependencies. The directory envbox happened to be imported from is added only when the
    venv holds no copy of envbox (an editable install): run from inside a checkout, `python -m`
    imports the checkout, which must not end up on the installed command's path."""
    if os.path.isfile(os.path.join(purelib, "envbox", "__init__.py")):
        return [purelib]
    return [imported_from] if imported_from == purelib else [imported_from, purelib]


def write_launcher(dest: str) -> None:
    """Write an executable `envbox` that runs this interpreter with -SI and this install."""
    import sysconfig

    sites = launcher_sites(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), sysconfig.get_paths()["purelib"])
    from envbox.fsio import write_atomic

    write_atomic(dest, LAUNCHER.format(python=sys.executable, sites=sites).encode(), mode=0o755)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-launcher"] and len(sys.argv) == 3:
        write_launcher(sys.argv[2])
    else:
        main()
