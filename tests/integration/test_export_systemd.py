"""`envbox export NAME --systemd` for real, as root and as the test user: the unit file, the
extension trees systemd will stack (with their extension-release metadata), and `envbox gc`
keeping the layers an exported unit uses. Starting the unit needs a running systemd: the VM
harness (tests/vm/) does that."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import no_traceback


@pytest.fixture
def senv(env):
    units = env.base / "units"
    units.mkdir()
    env.give(units)
    env.vars["ENVBOX_SYSTEMD_DIR"] = str(units)
    prefix = env.base / "pfx"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (prefix / "bin" / "tool").chmod(0o755)
    env.give(prefix)
    env.write_profile("svc", f"description: A service\ncommand: [/usr/bin/python, -m, http.server, '8080']\n"
                      f"env: {{GREETING: 100% hello}}\nlimits: {{memory: 256M, cpu: 1.5, pids: 64}}\n"
                      f"tools:\n  python: {{host: /usr/bin/python3}}\n  tool: {{dir: {prefix}}}\n")
    env.units = units
    return env


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_and_extension_trees(senv):
    result = senv.envbox("export", "svc", "--systemd")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    unit = senv.units / "envbox-svc.service"
    text = unit.read_text()
    settings = unit_settings(text)
    assert settings["ExecStart"] == ['"/usr/bin/python" "-m" "http.server" "8080"']
    assert settings["MemoryMax"] == [str(256 << 20)] and settings["CPUQuota"] == ["150%"] and settings["TasksMax"] == ["64"]
    assert '"GREETING=100%% hello"' in settings["Environment"]
    assert settings["WantedBy"] == ["multi-user.target" if senv.uid == 0 else "default.target"]
    extensions = [d.strip('"') for d in settings["ExtensionDirectories"][0].split()]
    assert len(extensions) == 2  # python (lowest), then tool
    os_release = dict(l.split("=", 1) for l in Path("/etc/os-release").read_text().splitlines() if "=" in l)
    for ext in map(Path, extensions):
        release = ext / "usr/lib/extension-release.d" / f"extension-release.{ext.name}"
        fields = dict(l.split("=", 1) for l in release.read_text().splitlines() if l and not l.startswith("#"))
        assert fields["ID"] == os_release["ID"].strip('"') and fields["VERSION_ID"] == os_release["VERSION_ID"].strip('"')
    python_ext, tool_ext = map(Path, extensions)
    assert os.readlink(python_ext / "usr/bin/python") == "/usr/bin/python3"
    assert (tool_ext / "usr/bin/tool").read_text() == "#!/bin/sh\necho tool\n"
    layer = senv.store / "layers" / python_ext.name.removeprefix("envbox-")
    assert any(p.name.startswith(python_ext.name.removeprefix("envbox-")) for p in (senv.store / "layers").iterdir()), layer
    again = senv.envbox("export", "svc", "--systemd")  # ours: rewritten in place
    assert again.returncode == 0, again.stderr
    if shutil.which("systemd-analyze"):
        # Offline syntax check of the unit (no running systemd needed); extension dirs exist.
        check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
        assert "Unknown key" not in check.stderr and "Failed to parse" not in check.stderr, check.stderr


def test_gc_keeps_the_layers_of_an_exported_unit(senv):
    assert senv.envbox("export", "svc", "--systemd").returncode == 0
    layers_before = sorted(p.name for p in (senv.store / "layers").iterdir())
    assert layers_before
    # (python -> /usr/bin/python3: a link layer no bundled profile shares)
    (senv.user_profiles / "svc.yaml").unlink()  # no profile uses the layers any more...
    kept = senv.envbox("gc")
    assert kept.returncode == 0, kept.stderr
    assert sorted(p.name for p in (senv.store / "layers").iterdir()) == layers_before  # ...the unit does
    listed = senv.envbox("layers")
    assert "unit:envbox-svc.service" in listed.stdout, listed.stdout
    extensions = Path(senv.vars["XDG_DATA_HOME"]) / "envbox" / "extensions"
    assert len([p for p in extensions.iterdir() if p.name.startswith("envbox-")]) == 2
    (senv.units / "envbox-svc.service").unlink()
    gone = senv.envbox("gc")
    assert gone.returncode == 0, gone.stderr
    assert [p for p in (senv.store / "layers").iterdir()] == []
    assert [p for p in extensions.iterdir() if p.name.startswith("envbox-")] == []
    assert "removed extension tree" in gone.stdout


def test_never_replaces_a_unit_envbox_did_not_write(senv):
    theirs = senv.units / "envbox-svc.service"
    theirs.write_text("[Service]\nExecStart=/bin/true\n")
    senv.give(theirs)
    result = senv.envbox("export", "svc", "--systemd")
    assert result.returncode == 125
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "not written by envbox" in lines[0] and lines[1].startswith("hint: ")
    assert theirs.read_text() == "[Service]\nExecStart=/bin/true\n"
    elsewhere = senv.envbox("export", "svc", "--systemd", "--output", str(senv.base / "mine.service"))
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (senv.base / "mine.service").exists()


def test_a_layers_etc_is_left_out_with_a_warning(senv):
    """A sysext carries /usr and /opt only: a release that also ships /etc exports without it,
    saying so (README), and its /usr part is in the extension tree."""
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in (("usr/bin/etctool", b"#!/bin/sh\necho etctool\n"), ("etc/etctool.conf", b"x=1\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
    archive = senv.base / "etctool.tar.gz"
    archive.write_bytes(buf.getvalue())
    catalog = Path(senv.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d"
    catalog.mkdir(parents=True, exist_ok=True)
    (catalog / "etctool.yaml").write_text(
        f'tool: etctool\nreleases:\n  - version: "1.0"\n'
        f"    source: {{kind: archive, url: {archive}, sha256: {hashlib.sha256(buf.getvalue()).hexdigest()}}}\n")
    senv.write_profile("etcsvc", "command: [/usr/bin/etctool]\ntools:\n  etctool: \"1.0\"\n")
    senv.give(senv.base)
    result = senv.envbox("export", "etcsvc", "--systemd")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    warnings = [l for l in result.stderr.splitlines() if l.startswith("envbox: warning:")]
    assert len(warnings) == 1 and "/etc is not carried" in warnings[0], result.stderr
    settings = unit_settings((senv.units / "envbox-etcsvc.service").read_text())
    (tree,) = [Path(d.strip('"')) for d in settings["ExtensionDirectories"][0].split()]
    assert (tree / "usr/bin/etctool").is_file() and not (tree / "etc").exists()


def test_a_umask_of_002_leaves_a_store_envbox_still_uses(senv):
    """A login with user private groups has umask 002 (Debian 13's su -l session in the VM):
    the store export builds must not come out group-writable, or the next gc refuses it."""
    assert senv.envbox("export", "svc", "--systemd", umask=0o002).returncode == 0
    for directory in (senv.store, senv.store / "layers", Path(senv.vars["XDG_DATA_HOME"]) / "envbox" / "extensions"):
        assert directory.stat().st_mode & 0o022 == 0, f"{directory} is {oct(directory.stat().st_mode)}"
    result = senv.envbox("gc", umask=0o002)
    assert result.returncode == 0, result.stderr
