"""The systemd scope's limits are read back after systemd-run starts the sandbox and before
the app starts; when they do not hold, the app never runs. A stand-in systemd-run plays the
manager (this host has none): it creates the 'scope' directory and execs the sandbox."""

from __future__ import annotations

import os
import stat

import pytest

from envbox.runtime import supervisor as launch


class FakeScope:
    backend = "systemd"

    def __init__(self, tmp_path, *, holds: bool):
        self.scope = tmp_path / "envbox.slice" / "envbox-x-1.scope"
        self.stand_in = tmp_path / "systemd-run"
        self.stand_in.write_text(f"#!/bin/sh\nmkdir -p {self.scope}\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n")
        self.stand_in.chmod(self.stand_in.stat().st_mode | stat.S_IXUSR)
        self.holds = holds
        self.paths = (str(self.scope),)

    def argv_prefix(self):
        return (str(self.stand_in), "--scope", "--")

    def join_files(self):
        return ()

    def verify(self, limits):
        return () if self.holds else ("memory: the manager ignored MemoryMax (memory.max is max)",)


def spec(tmp_path, marker, *, allow=False):
    return launch.LaunchSpec(
        profile="x", userns=os.getuid() != 0, overlays=[], env={"PATH": "/usr/bin:/bin"}, cwd=str(tmp_path),
        argv=["sh", "-c", f"touch {marker}"], limits={"memory": 1 << 26, "memory_swap": None, "cpu": None, "pids": None},
        allow_unenforced=allow, layer_digests=(), store_root="", runtime_dir="",
    )


@pytest.mark.parametrize("holds,allow,runs,code", [(True, False, True, 0), (False, False, False, 125), (False, True, True, 0)])
def test_app_starts_only_after_the_scope_limits_are_verified(tmp_path, capfd, holds, allow, runs, code):
    if os.getuid() != 0:
        pytest.skip("runs the sandbox in-process as root")
    marker = tmp_path / "app-ran"
    result = launch._spawn_and_wait(spec(tmp_path, marker, allow=allow), FakeScope(tmp_path, holds=holds))
    err = capfd.readouterr().err
    assert result == code, err
    assert marker.exists() == runs
    if not holds:
        assert "memory: the manager ignored MemoryMax" in err


def test_the_gate_pipe_does_not_leak_into_the_app(tmp_path, capfd):
    if os.getuid() != 0:
        pytest.skip("runs the sandbox in-process as root")
    out = tmp_path / "fds"
    s = spec(tmp_path, tmp_path / "unused")
    s.argv = ["sh", "-c", f"ls /proc/self/fd > {out}"]
    import fcntl

    def inheritable(fd: int) -> bool:
        try:
            return not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        except OSError:  # the directory handle listdir used, already closed
            return False

    inherited = {int(fd) for fd in os.listdir("/proc/self/fd") if inheritable(int(fd))}
    assert launch._spawn_and_wait(s, FakeScope(tmp_path, holds=True)) == 0
    leaked = {int(fd) for fd in out.read_text().split()} - inherited - {0, 1, 2, 3}  # 3: ls's own handle
    assert not leaked, f"fds {leaked} reached the app"


def test_systemd_run_is_found_by_absolute_path():
    from envbox.cgroups import control as cgroups
    from envbox.cgroups.host import HostCgroups

    host = HostCgroups(uid=0, systemd="system", systemd_root="/sys/fs/cgroup/system.slice", systemd_controllers=("memory",))
    try:
        cg = cgroups._create_systemd(host, "x", cgroups.Limits(memory=1 << 26))
    except cgroups.LimitError as exc:
        assert "systemd-run is not installed" in exc.message
    else:
        assert os.path.isabs(cg.prefix[0])
