"""On cgroup v2 the init is born inside the launch's cgroup (clone3 CLONE_INTO_CGROUP): no move.

The placement needs no controllers, so it is shown on any cgroup2 mount, in a cgroup the test
makes: the hybrid host's /sys/fs/cgroup/unified (no usable controllers, so no limits there), or
/sys/fs/cgroup itself on a unified host (the tests/vm guests, with and without systemd).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from envbox.runtime import supervisor as launch


def _cgroup2_mount() -> str | None:
    """The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one."""
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open("/proc/self/mountinfo") as f:
                if any(line.split(" - ")[1].startswith("cgroup2 ") and line.split()[4] == path for line in f):
                    return path
        except (OSError, IndexError):
            return None
    return None


@pytest.fixture
def v2_cgroup():
    mount = _cgroup2_mount()
    if os.getuid() != 0 or mount is None:
        pytest.skip("needs root and a cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
    path = os.path.join(mount, f"envbox-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)  # our own cgroup; removed below
    yield path
    os.rmdir(path)


def test_init_and_app_are_born_in_the_v2_cgroup(v2_cgroup, tmp_path):
    trace = tmp_path / "trace"
    cmd = [sys.executable, "-SI", launch.SANDBOX_FILE, "--unshare-pid", "--join-cgroup", os.path.join(v2_cgroup, "cgroup.procs"),
           "--setenv", "PATH", "/usr/bin:/bin", "--", "sh", "-c", "grep '^0::' /proc/self/cgroup"]
    result = subprocess.run(["strace", "-f", "-e", "trace=clone3", "-o", str(trace), *cmd], capture_output=True, text=True, timeout=60) \
        if subprocess.run(["which", "strace"], capture_output=True).returncode == 0 else subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0::/" + os.path.basename(v2_cgroup)
    if trace.exists():
        assert "CLONE_INTO_CGROUP" in trace.read_text(), "the init must be cloned into the cgroup, not moved"
