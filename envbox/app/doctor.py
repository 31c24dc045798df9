"""`envbox doctor`: probe what this machine can do for envbox. Forks short-lived test children."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass

from envbox.config.paths import Paths


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS | WARN | FAIL
    detail: str
    hint: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def _in_child(fn) -> tuple[bool, str]:
    """Run fn() in a forked child (namespaces must not touch this process); (ok, message)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn()
            os.write(w, b"ok")
            code = 0
        except BaseException as exc:  # report anything the probe hit, in the parent
            os.write(w, str(exc).encode()[:500])
            code = 1
        os._exit(code)
    os.close(w)
    message = b""
    while chunk := os.read(r, 1024):
        message += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, message.decode(errors="replace")


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    return Check("python", "PASS" if ok else "FAIL", f"{sys.executable} {v.major}.{v.minor}.{v.micro}", "" if ok else "envbox needs Python 3.11 or newer")


def check_namespaces(userns: bool) -> Check:
    from envbox.runtime import sandbox

    def probe() -> None:
        sandbox.Unshare(userns=userns, pidns=True).execute(None)

    ok, msg = _in_child(probe)
    name = "user namespaces" if userns else "mount namespaces"
    if ok:
        return Check(name, "PASS", "can unshare" + (" a user + mount namespace" if userns else " a mount namespace"))
    hint = "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces)" if userns else "run as root, or where mount namespaces are allowed"
    msg, _, own_hint = msg.partition("\nhint: ")  # the sandbox names the knob that is off, as a launch does
    return Check(name, "FAIL", msg, own_hint or hint)


def check_overlay(userns: bool) -> Check:
    from envbox.runtime import sandbox

    with tempfile.TemporaryDirectory(prefix="envbox-doctor-") as tmp:
        lower = os.path.join(tmp, "lower")
        target = os.path.join(tmp, "target")
        os.makedirs(os.path.join(lower, "bin"))
        os.makedirs(target)
        open(os.path.join(lower, "bin", "probe"), "w").close()

        def probe() -> None:
            ctx = sandbox.Context()
            ctx.userns = userns
            sandbox.Unshare(userns=userns).execute(ctx)
            sandbox.Overlay(target, (lower,)).execute(ctx)
            if not os.path.exists(os.path.join(target, "bin", "probe")):
                raise RuntimeError("overlay mounted but the layer's file is not visible")

        ok, msg = _in_child(probe)
    where = "in a user namespace" if userns else "as root"
    if ok:
        return Check("overlayfs", "PASS", f"read-only overlay mounts work {where}")
    return Check("overlayfs", "FAIL", f"{where}: {msg}", "overlayfs (kernel >= 5.11 for user namespaces) is required")


def check_cgroups() -> Check:
    from envbox.cgroups import control as cgroups

    host = cgroups.probe()
    sample = cgroups.Limits(memory=1 << 30, cpu=1.0, pids=100)
    choice = cgroups.choose_backend(host, sample)
    if not choice.problems:
        return Check("cgroups", "PASS", f"{choice.name}: {choice.reason}")
    return Check(
        "cgroups",
        "WARN",
        f"{choice.name}: {choice.reason}; cannot enforce: {'; '.join(choice.problems)}",
        "profiles with limits will refuse to launch unless allowed to run unenforced (--allow-unenforced)",
    )


def check_dir(name: str, path) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return Check(name, "PASS", f"{path} is writable")
    return Check(name, "FAIL", f"{path} is not writable", "set ENVBOX_DATA_DIR or XDG_DATA_HOME to a writable directory")


def run_checks(paths: Paths) -> list[Check]:
    userns = os.getuid() != 0
    return [
        check_python(),
        check_namespaces(userns),
        check_overlay(userns),
        check_cgroups(),
        check_dir("data dir", paths.data_dir),
        check_dir("cache dir", paths.cache_dir),
    ]
