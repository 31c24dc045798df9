"""The systemd unit envbox exports, as pure functions of plain values (table-driven)."""

from __future__ import annotations

import subprocess

import pytest

from envbox.export import systemd as sd

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'


@pytest.mark.parametrize("os_release, expected", [
    (DEBIAN, ["ID=debian", "VERSION_ID=12"]),
    ("ID='fedora'\nVERSION_ID=40\n", ["ID=fedora", "VERSION_ID=40"]),
    ("ID=arch\n", ["ID=arch"]),  # rolling: no VERSION_ID
    ("NAME=x\n", ["ID=_any"]),
    (None, ["ID=_any"]),
])
def test_extension_release(os_release, expected):
    text = sd.extension_release(os_release)
    assert [l for l in text.splitlines() if not l.startswith("#")] == expected


@pytest.mark.parametrize("word, expected", [
    ("python", '"python"'),
    ("-c", '"-c"'),
    ("print('a b')", '"print(\'a b\')"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("100%", '"100%%"'),
    ("$HOME", '"$$HOME"'),
    ("a\\b", '"a\\\\b"'),
])
def test_escape(word, expected):
    assert sd.escape(word) == expected


@pytest.mark.parametrize("name, value, expected", [
    ("PATH", "/usr/bin:/bin", '"PATH=/usr/bin:/bin"'),
    ("MSG", 'a "b" 50%', '"MSG=a \\"b\\" 50%%"'),
    ("X", "$notexpanded", '"X=$notexpanded"'),
])
def test_escape_env(name, value, expected):
    assert sd.escape_env(name, value) == expected


SPEC = dict(profile="web", description="A web app", argv=("/usr/bin/python", "-m", "http.server"),
            env=(("PATH", "/usr/bin"), ("ENVBOX_PROFILE", "web")),
            extensions=("/data/ext/envbox-aaaa", "/data/ext/envbox-bbbb"),
            limits=("MemoryMax=268435456", "CPUQuota=150%", "TasksMax=64"))


@pytest.mark.parametrize("system, wanted_by", [(True, "multi-user.target"), (False, "default.target")])
def test_render(system, wanted_by):
    text = sd.render(sd.UnitSpec(system=system, **SPEC))
    lines = text.splitlines()
    service = lines[lines.index("[Service]") + 1:lines.index("[Install]")]
    assert [l for l in service if l] == [
        "Type=exec",
        'ExtensionDirectories="/data/ext/envbox-aaaa" "/data/ext/envbox-bbbb"',
        *([] if system else ["PrivateUsers=yes"]),  # systemd 252 needs it in user managers
        'Environment="PATH=/usr/bin"',
        'Environment="ENVBOX_PROFILE=web"',
        "ExecStartPre=" + " ".join(sd.escape(a) for a in sd.layers_check(SPEC["extensions"])),
        'ExecStart="/usr/bin/python" "-m" "http.server"',
        "MemoryMax=268435456",
        "CPUQuota=150%",
        "TasksMax=64",
        "NoNewPrivileges=yes",
    ]
    assert f"WantedBy={wanted_by}" in lines
    assert "Description=web (envbox profile): A web app" in lines
    assert sd.read_marker(text) == "web"


def test_no_layers_no_limits():
    text = sd.render(sd.UnitSpec(**{**SPEC, "extensions": (), "limits": ()}, system=True))
    assert "ExtensionDirectories" not in text and "MemoryMax" not in text and "ExecStartPre" not in text


@pytest.mark.parametrize("present, status", [(("envbox-aaaa", "envbox-bbbb"), 0), (("envbox-aaaa",), 1), ((), 1)])
def test_layers_check(tmp_path, present, status):
    """The ExecStartPre= guard, run for real by sh against a stand-in for the merged /usr."""
    argv = sd.layers_check(SPEC["extensions"])
    assert argv[-2:] == ["envbox-aaaa", "envbox-bbbb"]
    releases = tmp_path / "usr/lib/extension-release.d"
    releases.mkdir(parents=True)
    for name in present:
        (releases / f"extension-release.{name}").write_text("ID=_any\n")
    script = argv[2].replace("/usr/lib/", f"{tmp_path}/usr/lib/")
    result = subprocess.run([argv[0], "-c", script, *argv[3:]], capture_output=True, text=True)
    assert result.returncode == status
    if status:
        assert result.stderr.startswith("envbox: layer envbox-") and "systemd 251 or later" in result.stderr


@pytest.mark.parametrize("text, expected", [
    ("# x\n# envbox-export: profile=web\n[Unit]\n", "web"),
    ("[Unit]\nDescription=mine\n", None),
    ("# envbox-export: profile=\n", None),
])
def test_read_marker(text, expected):
    assert sd.read_marker(text) == expected
