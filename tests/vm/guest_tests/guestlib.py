"""What the tests run inside a tests/vm guest share: the installed CLI they drive, who runs
them, and an isolated set of envbox directories that is removed however the test ends."""

from __future__ import annotations

import os
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import remove_tree

in_vm_only = pytest.mark.skipif(os.environ.get("ENVBOX_IN_VM") != "1", reason="runs only inside a tests/vm guest (tests/vm/test_vm.py boots one)")

ENVBOX = os.path.join(os.environ.get("ENVBOX_TEST_PREFIX", "/opt/envbox-test"), "bin", "envbox")
UID = os.getuid()
SYSTEMD = os.path.isdir("/run/systemd/system")
# The caller's variables envbox may see: the session's XDG_RUNTIME_DIR and bus stay as they are.
KEPT = ("HOME", "USER", "LOGNAME", "PATH", "LANG", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")


class Dirs:
    """envbox's config, data, cache, state and system dirs below one base, and the CLI run there."""

    def __init__(self, base: Path):
        self.path = base
        self.env = {k: v for k, v in os.environ.items() if k in KEPT}
        self.env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_DATA_HOME=str(base / "data"), XDG_CACHE_HOME=str(base / "cache"),
                        XDG_STATE_HOME=str(base / "state"), ENVBOX_SYSTEM_DIR=str(base / "etc"))
        self.profiles = base / "config" / "envbox" / "profiles"
        self.profiles.mkdir(parents=True)

    def envbox(self, *args, timeout=180, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([ENVBOX, *args], env=self.env, cwd=str(self.path), capture_output=True, text=True, timeout=timeout, **kw)

    def popen(self, *args, **kw) -> subprocess.Popen:
        return subprocess.Popen([ENVBOX, *args], env=self.env, cwd=str(self.path), **kw)


@contextmanager
def isolated(prefix: str):
    """A Dirs below a new world-readable temporary base, removed at the end whatever happened."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(base, 0o755)
    try:
        yield Dirs(base)
    finally:
        remove_tree(base)
