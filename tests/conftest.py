"""Test harness: isolated HOME/XDG dirs, and envbox run for real as root or as the test user.

Rootless cases run the envbox from a world-readable install ($ENVBOX_TEST_PREFIX, made by
tests/run) as $ENVBOX_TEST_USER. Where that is missing they skip with the reason, unless
ENVBOX_REQUIRE_ALL=1 (tests/run and CI set it), which turns such skips into failures.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REQUIRE_ALL = os.environ.get("ENVBOX_REQUIRE_ALL") == "1"


TEST_TIMEOUT = int(os.environ.get("ENVBOX_TEST_TIMEOUT", "900"))


def _default_signals() -> None:
    """Started in the background (`cmd &`) or under nohup, pytest inherits SIGINT, SIGQUIT or
    SIGHUP ignored, and every command a test runs would inherit that too (ignored signals
    survive exec): the signal tests would then test the caller. Give them their defaults."""
    import signal

    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


_default_signals()


def pytest_collection_modifyitems(config, items):
    """`matrix` tests (every release of every tool family) run only when -m names them."""
    if "matrix" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: run with -m matrix")
    for item in items:
        if "matrix" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _timeout():
    """Every test has a deadline: a hang fails the test instead of stalling CI."""
    import signal

    def expired(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def need(condition: bool, reason: str) -> None:
    """Skip when the host cannot do something; fail instead where CI says it must."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required but unavailable: {reason}")
        pytest.skip(reason)


def envbox_bin() -> str:
    prefix = os.environ.get("ENVBOX_TEST_PREFIX")
    if prefix:
        return str(Path(prefix) / "bin" / "envbox")
    return str(Path(sys.executable).parent / "envbox")


@dataclass
class Env:
    """One isolated envbox world: HOME, XDG dirs, system dir; as root or as the test user."""

    base: Path
    mode: str  # "root" | "rootless"
    uid: int
    gid: int
    vars: dict = field(default_factory=dict)
    procs: list = field(default_factory=list)  # started with popen; killed at teardown

    @property
    def home(self) -> Path:
        return Path(self.vars["HOME"])

    @property
    def user_profiles(self) -> Path:
        return Path(self.vars["XDG_CONFIG_HOME"]) / "envbox" / "profiles"

    @property
    def store(self) -> Path:
        return Path(self.vars["XDG_DATA_HOME"]) / "envbox" / "store"

    def write_profile(self, name: str, text: str, *, directory: Path | None = None) -> Path:
        directory = directory or self.user_profiles
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.yaml"
        path.write_text(text)
        self.give(self.home)
        return path

    def give(self, path: Path) -> None:
        """Make a path under the base belong to the env's user."""
        if self.uid == 0:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in files + dirs:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)

    def cmd(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run any command as this env's user with exactly this env's variables."""
        env = dict(self.vars)
        env.update(kw.pop("env", {}) or {})
        kw.setdefault("timeout", 120)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("cwd", str(self.home))
        if self.uid != 0:
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        return subprocess.run(argv, env=env, **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        env = dict(self.vars)
        env.update(kw.pop("env", {}) or {})
        kw.setdefault("cwd", str(self.home))
        if self.uid != 0:
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        proc = subprocess.Popen(argv, env=env, **kw)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Kill what a failed test left running (killing envbox kills its app's whole tree)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def envbox(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.cmd([envbox_bin(), *args], **kw)

    def envbox_popen(self, *args: str, **kw) -> subprocess.Popen:
        return self.popen([envbox_bin(), *args], **kw)


def _make_env(mode: str) -> Env:
    if mode == "rootless":
        user = os.environ.get("ENVBOX_TEST_USER", "envboxtest")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            need(False, f"no test user {user!r} (tests/run creates it)")
        need(bool(os.environ.get("ENVBOX_TEST_PREFIX")), "no world-readable envbox install (ENVBOX_TEST_PREFIX; tests/run makes one)")
        uid, gid = pw.pw_uid, pw.pw_gid
    else:
        need(os.getuid() == 0, "the root cases need root")
        uid, gid = 0, 0
    base = Path(tempfile.mkdtemp(prefix=f"envbox-test-{mode}-", dir="/tmp"))
    os.chmod(base, 0o755)
    home = base / "home"
    home.mkdir()
    env = Env(base=base, mode=mode, uid=uid, gid=gid)
    env.vars = {
        "HOME": str(home),
        "USER": "root" if uid == 0 else os.environ.get("ENVBOX_TEST_USER", "envboxtest"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_RUNTIME_DIR": str(base / "run"),
        "ENVBOX_SYSTEM_DIR": str(base / "etc-envbox"),
    }
    (base / "run").mkdir(mode=0o700)
    env.give(base)
    return env


def shared_cache(env: Env) -> None:
    """Point env at a download cache shared by the tests of its mode (content-addressed by
    sha256, so sharing is safe), so each release is downloaded once per run, not per test."""
    path = Path(f"/tmp/envbox-test-downloads-{env.mode}")
    path.mkdir(exist_ok=True)
    if env.uid:
        os.chown(path, env.uid, env.gid)
    os.chmod(path, 0o755)
    env.vars["ENVBOX_CACHE_DIR"] = str(path)


def private_cache(env: Env) -> None:
    """Like shared_cache, but a copy (hard links: no bytes copied) that this test's `envbox gc`
    may prune without taking downloads from other tests."""
    shared = Path(f"/tmp/envbox-test-downloads-{env.mode}")
    mine = env.base / "cache"
    if shared.is_dir():
        subprocess.run(["cp", "-al", str(shared), str(mine)], check=True)
        shutil.rmtree(mine / "plans", ignore_errors=True)
        # Files envbox rewrites in place (apt.conf names its own directory, the stamps, the lock)
        # must not stay shared: each gets a copy of its own. Lists, index copies and downloads
        # are only ever replaced by rename, which leaves the shared file alone.
        for suite in (mine / "downloads" / "apt").glob("*-*"):
            for path in [suite / "apt.conf", suite / "sources.list", suite / ".lock", suite / "updated", *suite.glob("state/*")]:
                if path.is_file():
                    data = path.read_bytes()
                    path.unlink()
                    path.write_bytes(data)
    else:
        mine.mkdir()
    env.give(mine)
    env.vars["ENVBOX_CACHE_DIR"] = str(mine)


@pytest.fixture(params=["root", "rootless"])
def env(request) -> Env:
    e = _make_env(request.param)
    yield e
    e.stop_all()
    remove_tree(e.base)


@pytest.fixture
def root_env() -> Env:
    e = _make_env("root")
    yield e
    e.stop_all()
    remove_tree(e.base)


def remove_tree(base: Path) -> None:
    # Stored layers are read-only on purpose; give write bits back before removing.
    for root, dirs, _ in os.walk(base):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(base, ignore_errors=True)


def mountinfo_lines() -> list[str]:
    """The host's mount table without the per-mount ids, which are fine to differ."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[2:]) for line in f)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr
