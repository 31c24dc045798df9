"""Review class 3: read-only protection must not stop at a mount boundary.

envbox's own directories (config, data/store, state, cache, system dir) are read-only inside a
launch; a separate file system mounted below one of them (the store on its own disk, a
bind-mounted cache) must be read-only too, as root and rootless. The sandbox now binds each
protected directory recursively and makes the whole tree read-only (mount_setattr with
AT_RECURSIVE, or a remount of every submount on older kernels).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import no_traceback

PROFILE = "command: [sh, -c]\ntools:\n  python: {host: /usr/bin/python3.11}\n"


def _mount_tmpfs(path: Path, uid: int, gid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0755,uid={uid},gid={gid},size=4m", "envbox-review", str(path)], check=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("legacy", [False, True], ids=["mount_setattr", "remount-each"])
@pytest.mark.parametrize("where", ["store", "cache", "config", "state", "system"])
def test_a_mount_below_a_protected_dir_is_read_only_too(env, where, legacy):
    env.write_profile("sub", PROFILE)
    assert env.envbox("launch", "sub", "--", "true").returncode == 0  # builds the layer, makes the dirs
    base = {
        "store": env.store,
        "cache": Path(env.vars["XDG_CACHE_HOME"]) / "envbox",
        "config": Path(env.vars["XDG_CONFIG_HOME"]) / "envbox",
        "state": Path(env.vars["XDG_STATE_HOME"]) / "envbox",
        "system": Path(env.vars["ENVBOX_SYSTEM_DIR"]),
    }[where]
    target = base / "separate-fs"
    if where == "system":
        base.mkdir(parents=True, exist_ok=True)
    _mount_tmpfs(target, env.uid, env.gid)
    nested = target / "nested"
    try:
        nested.mkdir()
        os.chown(nested, env.uid, env.gid)
        _mount_tmpfs(nested, env.uid, env.gid)
        # The mounts are writable outside a launch: the test can fail.
        probe = env.cmd(["sh", "-c", f"touch {target}/outside {nested}/outside && echo ok"])
        assert probe.stdout.strip() == "ok", probe.stderr
        script = (
            f"for p in {target}/evil {nested}/evil {target}/outside; do "
            f"if (echo x > $p) 2>/dev/null; then echo wrote $p; else (echo x > $p) 2>&1 | grep -q 'Read-only' && echo erofs $p; fi; done"
        )
        # The switch makes the sandbox remount each mount as kernels before 5.12 need.
        result = env.envbox("launch", "sub", "--", script, env={"ENVBOX_SANDBOX_NO_MOUNT_SETATTR": "1"} if legacy else {})
        no_traceback(result)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:3] == [f"erofs {target}/evil", f"erofs {nested}/evil", f"erofs {target}/outside"], result.stdout
        assert sorted(os.listdir(target)) == ["nested", "outside"] and os.listdir(nested) == ["outside"]
        assert (target / "outside").read_bytes() == b""
    finally:
        _umount(nested)
        _umount(target)


def test_the_plan_lists_the_protected_dirs_as_read_only(root_env):
    """The printed sandbox command carries --ro-bind for each protected directory."""
    env = root_env
    env.write_profile("sub", PROFILE)
    assert env.envbox("launch", "sub", "--", "true").returncode == 0
    out = env.envbox("plan", "sub").stdout
    assert f"--ro-bind {env.store.parent}" in out
