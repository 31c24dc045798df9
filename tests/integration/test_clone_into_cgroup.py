"""On cgroup v2 the init is born inside the launch's cgroup (clone3 CLONE_INTO_CGROUP): no move.

This host's cgroup2 hierarchy has no usable controllers, so limits cannot be shown here (the
real v2 limit tests skip with that reason); the placement itself can, in a cgroup the test makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from envbox.runtime import supervisor as launch

UNIFIED = "/sys/fs/cgroup/unified"


@pytest.fixture
def v2_cgroup():
    if os.getuid() != 0 or not os.path.exists(os.path.join(UNIFIED, "cgroup.controllers")):
        pytest.skip("needs root and a cgroup2 mount at /sys/fs/cgroup/unified")
    path = os.path.join(UNIFIED, f"envbox-test-{uuid.uuid4().hex[:12]}")
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
