"""`envbox export NAME --systemd` under a real systemd, inside a tests/vm guest (skipped anywhere
else): as root a system unit (systemctl), as the session user a user unit (systemctl --user).

Everything is local (no download): the profile's python is a `host:` link layer in the store
(/usr/bin/python -> /usr/bin/python3, which the guest lacks at /usr/bin/python), a second tool
is a catalog release built from a local archive (a store layer of real files, which the
extension tree hard-links), a third a `dir:` prefix; the unit must see all three at their /usr
paths, with its limits in force, while the guest's own /usr stays as it was. Every unit a test makes is stopped and removed
(and the manager reloaded) however the test ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from guestlib import SYSTEMD, UID, isolated, in_vm_only

pytestmark = [in_vm_only, pytest.mark.skipif(not SYSTEMD, reason="no systemd manager in this guest")]

SCOPE = [] if UID == 0 else ["--user"]
# The service: says what /usr/bin/python is from inside, then stays up.
SERVICE = ("import os, sys\n"
           "out = open(os.environ['SD_OUT'], 'a')\n"
           "out.write('python=%s\\n' % os.readlink('/usr/bin/python'))\n"
           "out.write('version=%s\\n' % sys.version.split()[0])\n"
           "out.write('hello=%s\\n' % os.popen('/usr/bin/envbox-sd-hello').read().strip())\n"
           "out.write('archived=%s\\n' % os.popen('/usr/bin/envbox-sd-archived').read().strip())\n"
           "out.write('greeting=%s\\n' % os.environ.get('GREETING'))\n"
           "out.close()\n"
           "import time; time.sleep(600)\n")
HOG = "b = bytearray(256 << 20); b[::4096] = b'x' * len(b[::4096]); print('survived')"


def systemctl(*args, check=True, timeout=120):
    result = subprocess.run(["systemctl", *SCOPE, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"systemctl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


def show(unit: str, *props: str) -> dict[str, str]:
    out = systemctl("show", unit, *[f"-p{p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(unit: str) -> str:
    cmd = ["journalctl", "--no-pager", "-q", "-n", "40"] + (["-u", unit] if UID == 0 else ["--user-unit", unit])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def recent_journal() -> str:
    """The newest lines this user may read, whatever unit journald filed them under: an
    ExecStartPre= that prints one line and exits at once can be gone before journald looks up
    its cgroup, and its line then lacks the user-unit field `--user-unit` matches on."""
    out = ""
    for scope in ([[]] if UID == 0 else [["--user"], []]):
        result = subprocess.run(["journalctl", *scope, "--no-pager", "-q", "-n", "400"], capture_output=True, text=True, timeout=60)
        out += result.stdout
    return out


def wait_for(predicate, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture
def world():
    """Isolated envbox dirs; units go where this guest's manager reads them; every unit made
    is stopped, its file removed and the manager reloaded at the end, whatever happened."""
    made: list[str] = []
    with isolated("envbox-sd-") as dirs:
        try:
            yield _world(dirs, made)
        finally:
            for unit in made:
                systemctl("stop", unit, check=False)
                systemctl("reset-failed", unit, check=False)
                (_unit_dir() / unit).unlink(missing_ok=True)
            if made:
                systemctl("daemon-reload", check=False)


def _unit_dir() -> Path:
    if UID == 0:
        return Path("/etc/systemd/system")  # the default for root: nothing set
    # The user manager reads ~/.config/systemd/user; the world's XDG_CONFIG_HOME is elsewhere.
    return Path(os.environ["HOME"]) / ".config" / "systemd" / "user"


def _world(dirs, made: list[str]):
    base, units = dirs.path, _unit_dir()
    if UID != 0:
        dirs.env["ENVBOX_SYSTEMD_DIR"] = str(units)
        units.mkdir(parents=True, exist_ok=True)
    hello = base / "hello"
    (hello / "bin").mkdir(parents=True)
    (hello / "bin" / "envbox-sd-hello").write_text("#!/bin/sh\necho hello from the dir layer\n")
    (hello / "bin" / "envbox-sd-hello").chmod(0o755)
    # A catalog release from a local archive: a store layer with a real file in it.
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        content = b"#!/bin/sh\necho hello from the archive layer\n"
        info = tarfile.TarInfo("usr/bin/envbox-sd-archived")
        info.size, info.mode = len(content), 0o755
        tar.addfile(info, io.BytesIO(content))
    (base / "archived.tar.gz").write_bytes(blob.getvalue())
    catalog = base / "config" / "envbox" / "catalog.d"
    catalog.mkdir(parents=True)
    (catalog / "archived.yaml").write_text(
        f'tool: archived\nreleases:\n  - version: "1.0"\n    source: {{kind: archive, url: {base / "archived.tar.gz"}, '
        f"sha256: {hashlib.sha256(blob.getvalue()).hexdigest()}}}\n")

    class World:
        path = base
        unit_dir = units
        out = base / "out.txt"

        def profile(self, name: str, command: list[str], limits: str = "{memory: 64M, cpu: 0.5, pids: 32}") -> None:
            argv = json.dumps(command)  # JSON is YAML flow syntax with the escapes kept
            (dirs.profiles / f"{name}.yaml").write_text(
                f"command: {argv}\nenv: {{SD_OUT: {self.out}, GREETING: '50% hello'}}\nlimits: {limits}\n"
                f"tools:\n  python: {{host: /usr/bin/python3}}\n  archived: \"1.0\"\n  hello: {{dir: {hello}}}\n")

        def remove_profile(self, name: str) -> None:
            (dirs.profiles / f"{name}.yaml").unlink()

        def envbox(self, *args, timeout=300):
            return dirs.envbox(*args, timeout=timeout)

        def export(self, name: str) -> Path:
            unit = f"envbox-{name}.service"
            made.append(unit)
            result = self.envbox("export", name, "--systemd")
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            path = units / unit
            assert path.is_file(), result.stdout
            systemctl("daemon-reload")
            return path

    return World()


def unit_failure(world, unit: str) -> str:
    facts = show(unit, "ActiveState", "SubState", "Result", "ExecMainStatus", "ExecMainCode")
    return f"{facts}\n--- journal:\n{journal(unit)}\n--- unit:\n{(world.unit_dir / unit).read_text()}"


def test_the_unit_runs_with_the_profiles_layers_and_limits(world):
    assert not os.path.lexists("/usr/bin/python"), "this guest has a /usr/bin/python: the test would prove nothing"
    world.profile("sdsvc", ["/usr/bin/python", "-c", SERVICE])
    path = world.export("sdsvc")
    text = path.read_text()
    assert "ExtensionDirectories=" in text and "MemoryMax=67108864" in text, text
    unit = path.name
    start = systemctl("start", unit, check=False)
    assert start.returncode == 0, start.stderr + unit_failure(world, unit)
    seen = wait_for(lambda: world.out.is_file() and "greeting=" in world.out.read_text() and world.out.read_text(), 120)
    assert seen, "the service wrote nothing\n" + unit_failure(world, unit)
    facts = dict(line.split("=", 1) for line in seen.splitlines())
    assert facts["python"] == "/usr/bin/python3", seen  # the layer's link, at the layer's path
    assert facts["version"].startswith("3."), seen
    assert facts["hello"] == "hello from the dir layer", seen
    assert facts["archived"] == "hello from the archive layer", seen
    assert facts["greeting"] == "50% hello", seen
    state = show(unit, "ActiveState", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax", "NoNewPrivileges")
    assert state["ActiveState"] == "active", unit_failure(world, unit)
    assert state["MemoryMax"] == str(64 << 20), state
    assert state["CPUQuotaPerSecUSec"] == "500ms", state
    assert state["TasksMax"] == "32", state
    assert state["NoNewPrivileges"] == "yes", state
    # The layers are the unit's alone: the guest's /usr is untouched while it runs.
    assert not os.path.lexists("/usr/bin/python")
    assert not os.path.lexists("/usr/bin/envbox-sd-hello")
    assert not os.path.lexists("/usr/bin/envbox-sd-archived")
    # The extension tree holds the store's file itself (a hard link), not a second copy.
    (linked,) = (world.path / "data" / "envbox" / "extensions").glob("envbox-*/usr/bin/envbox-sd-archived")
    (stored,) = (world.path / "data" / "envbox" / "store" / "layers").glob("*/usr/bin/envbox-sd-archived")
    assert linked.samefile(stored), (linked, stored)
    # The cgroup the service runs in carries the same caps.
    cgroup = show(unit, "ControlGroup")["ControlGroup"]
    directory = Path("/sys/fs/cgroup" + cgroup)
    assert (directory / "memory.max").read_text().strip() == str(64 << 20)
    assert (directory / "pids.max").read_text().strip() == "32"
    assert (directory / "cpu.max").read_text().split() == ["50000", "100000"]
    systemctl("stop", unit)


def test_the_memory_cap_holds(world):
    world.profile("sdhog", ["/usr/bin/python", "-c", HOG])
    unit = world.export("sdhog").name
    systemctl("start", unit, check=False)  # Type=exec: returns once the program runs
    done = wait_for(lambda: show(unit, "ActiveState")["ActiveState"] in ("failed", "inactive"), 180)
    facts = show(unit, "ActiveState", "Result")
    assert done and facts["Result"] == "oom-kill", unit_failure(world, unit)
    assert "survived" not in journal(unit)


def test_gc_keeps_the_layers_while_the_unit_exists(world):
    world.profile("sdgc", ["/usr/bin/python", "-c", SERVICE])
    path = world.export("sdgc")
    unit = path.name
    store = world.path / "data" / "envbox" / "store" / "layers"
    extensions = world.path / "data" / "envbox" / "extensions"
    layers = sorted(p.name for p in store.iterdir())
    trees = sorted(p.name for p in extensions.iterdir() if p.name.startswith("envbox-"))
    assert len(layers) == 2 and len(trees) == 3, (layers, trees)  # python's and archived's; + the dir prefix's tree
    start = systemctl("start", unit, check=False)
    assert start.returncode == 0, start.stderr + unit_failure(world, unit)
    world.remove_profile("sdgc")  # only the unit uses the layers now
    kept = world.envbox("gc")
    assert kept.returncode == 0, kept.stderr
    assert sorted(p.name for p in store.iterdir()) == layers, kept.stdout
    assert sorted(p.name for p in extensions.iterdir() if p.name.startswith("envbox-")) == trees, kept.stdout
    listed = world.envbox("layers")
    assert listed.returncode == 0 and f"unit:{unit}" in listed.stdout, listed.stdout + listed.stderr
    assert show(unit, "ActiveState")["ActiveState"] == "active", unit_failure(world, unit)
    systemctl("stop", unit)
    path.unlink()
    systemctl("daemon-reload")
    gone = world.envbox("gc")
    assert gone.returncode == 0, gone.stderr
    assert list(store.iterdir()) == [], gone.stdout
    assert [p for p in extensions.iterdir() if p.name.startswith("envbox-")] == [], gone.stdout
    assert "removed extension tree" in gone.stdout


def test_a_unit_whose_layers_are_not_stacked_refuses_to_start(world):
    """A systemd older than 251 ignores ExtensionDirectories= with only a warning: the service
    would run on the guest's own /usr. Without that line (what such a systemd sees), the unit's
    ExecStartPre= guard stops it before the command runs, saying why."""
    # A command the guest has itself, so that without the guard it would run (on the guest's
    # /usr) and create the output file.
    world.profile("sdold", ["/usr/bin/python3", "-c", SERVICE])
    path = world.export("sdold")
    text = path.read_text()
    path.write_text("".join(l for l in text.splitlines(keepends=True) if not l.startswith("ExtensionDirectories=")))
    systemctl("daemon-reload")
    unit = path.name
    start = systemctl("start", unit, check=False)
    assert start.returncode != 0, unit_failure(world, unit)
    facts = show(unit, "ActiveState", "Result")
    assert facts["ActiveState"] == "failed" and facts["Result"] == "exit-code", unit_failure(world, unit)
    assert not world.out.exists(), world.out.read_text()  # the command never ran
    logged = journal(unit)
    if UID != 0 and ("insufficient permissions" in logged or "No entries" in logged or not logged.strip()):
        return  # a volatile journal is not split per user: the user may not read the line (root can)
    said = wait_for(lambda: "is not stacked on /usr" in journal(unit) + recent_journal(), 30)
    assert said, journal(unit)
