"""Running Debian's podman and crun on this kind of host, for the export tests.

Two things stop a stock `podman run` on the test machines (a VM with cgroup v1 plus a
cgroup2 hierarchy at /sys/fs/cgroup/unified that still has a controller, hugetlb):
- crun refuses hybrid cgroups whose v2 side has controllers ("cgroups in hybrid mode not
  supported, drop all controllers from cgroupv2"): podman and crun run in a private mount
  namespace without /sys/fs/cgroup/unified, which makes the host look like plain cgroup v1
  (nothing outside that namespace changes);
- the VM's root lacks CAP_SYS_RESOURCE and conmon runs with RLIMIT_NPROC 32768, below
  podman's default rlimits, so crun's setrlimit fails with EPERM: a containers.conf of the
  test's own sets default_ulimits below any host's.
Podman's storage is the test's own too (--root/--runroot), so nothing global is touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'


def _hybrid_with_controllers() -> bool:
    try:
        return bool(Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split())
    except OSError:
        return False


def wrap(argv_script: str) -> list[str]:
    """A shell script run in a private mount namespace shaped for crun."""
    prelude = "umount /sys/fs/cgroup/unified 2>/dev/null; " if _hybrid_with_controllers() else ""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", prelude + argv_script]


class Podman:
    def __init__(self, base: Path):
        self.base = base
        self.conf = base / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        self.flags = f"--root {shlex.quote(str(base / 'storage'))} --runroot {shlex.quote(str(base / 'runroot'))} --cgroup-manager cgroupfs --events-backend none"

    def run(self, args: str, timeout: int = 180) -> subprocess.CompletedProcess:
        env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        # conmon writes an `oom` file into its working directory when a container is OOM-killed:
        # run it in the test's own directory, never the checkout.
        return subprocess.run(wrap(f"podman {self.flags} {args}"), capture_output=True, text=True, timeout=timeout, env=env, cwd=str(self.base))

    def reset(self) -> None:
        self.run("system reset --force", timeout=120)


def podman_problem() -> str | None:
    """Why podman cannot be tried here at all, or None."""
    if os.getuid() != 0:
        return "rootful podman needs root"
    for tool in ("podman", "crun", "unshare"):
        if not shutil.which(tool):
            return f"{tool} is not installed (tests/run installs it)"
    return None
