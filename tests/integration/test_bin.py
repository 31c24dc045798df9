"""`envbox bin install|list|remove` for real, as root and as the test user: the wrapper runs
the profile through the fast launch path, and envbox never touches a file it did not write."""

from __future__ import annotations

import json
import os

import pytest

from conftest import no_traceback
from envbox.app import bins

PY = "import sys; print(sys.version_info[:2])"


@pytest.fixture
def wenv(env):
    """env with ENVBOX_BIN_DIR in the test's base (never the real ~/.local/bin or /usr/local/bin)."""
    directory = env.base / "bin"
    directory.mkdir()
    env.give(directory)
    env.vars["ENVBOX_BIN_DIR"] = str(directory)
    env.vars["PATH"] = f"{directory}:{env.vars['PATH']}"
    env.write_profile("pyh", "command: [python]\ntools:\n  python: {host: /usr/bin/python3.11}\n")
    return env


def test_installed_command_runs_the_profile_on_the_fast_path(wenv):
    result = wenv.envbox("bin", "install", "pyh", "--as", "py-pinned")
    assert result.returncode == 0, result.stderr
    wrapper = wenv.base / "bin" / "py-pinned"
    assert os.access(wrapper, os.X_OK)
    assert bins.MARKER + "pyh" in wrapper.read_text()
    first = wenv.cmd(["py-pinned", "-c", PY], env={"ENVBOX_TRACE": "1"})  # by name, through PATH
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "(3, 11)"
    second = wenv.cmd(["py-pinned", "-c", "import sys; print(sys.argv[1:])", "--flag", "a b"], env={"ENVBOX_TRACE": "1"})
    assert second.returncode == 0, second.stderr
    assert "fast path (cached plan)" in second.stderr, second.stderr
    assert second.stdout.strip() == "['--flag', 'a b']"
    exit_code = wenv.cmd(["py-pinned", "-c", "raise SystemExit(7)"])
    assert exit_code.returncode == 7


def test_list_and_remove(wenv):
    assert wenv.envbox("bin", "install", "pyh").returncode == 0
    assert wenv.envbox("bin", "install", "pyh", "--as", "other").returncode == 0
    listed = wenv.envbox("bin", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["command"], r["profile"]) for r in rows] == [("other", "pyh"), ("pyh", "pyh")]
    again = wenv.envbox("bin", "install", "pyh")  # our own wrapper: rewritten, not refused
    assert again.returncode == 0 and "updated" in again.stdout
    removed = wenv.envbox("bin", "remove", "other")
    assert removed.returncode == 0, removed.stderr
    assert not (wenv.base / "bin" / "other").exists()
    assert [r["command"] for r in json.loads(wenv.envbox("bin", "list", "--json").stdout)] == ["pyh"]
    (wenv.user_profiles / "pyh.yaml").unlink()
    orphan = json.loads(wenv.envbox("bin", "list", "--json").stdout)
    assert [(r["command"], r["orphan"]) for r in orphan] == [("pyh", True)]
    assert "no such profile" in wenv.envbox("bin", "list").stdout
    gone = wenv.envbox("bin", "remove", "other")
    assert gone.returncode == 125 and gone.stderr.startswith("envbox: no command 'other'")


@pytest.mark.parametrize("content", ["#!/bin/sh\necho mine\n", "#!/bin/sh\n# envbox-bin: profile=pyh\n"])
def test_never_replaces_or_removes_a_file_envbox_did_not_write(wenv, content):
    theirs = wenv.base / "bin" / "pyh"
    theirs.write_text(content)
    wenv.give(theirs)
    for args in (("bin", "install", "pyh"), ("bin", "remove", "pyh")):
        result = wenv.envbox(*args)
        assert result.returncode == 125, result
        no_traceback(result)
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and "not written by envbox" in lines[0] and lines[1].startswith("hint: "), lines
        assert theirs.read_text() == content
    assert json.loads(wenv.envbox("bin", "list", "--json").stdout) == []


def test_symlink_is_not_ours(wenv, tmp_path):
    link = wenv.base / "bin" / "pyh"
    os.symlink("/bin/true", link)
    result = wenv.envbox("bin", "install", "pyh")
    assert result.returncode == 125 and "not written by envbox" in result.stderr
    assert os.readlink(link) == "/bin/true"


def test_unknown_profile_and_bad_command_name(wenv):
    missing = wenv.envbox("bin", "install", "nope")
    assert missing.returncode == 125 and missing.stderr.startswith("envbox: ") and "nope" in missing.stderr
    bad = wenv.envbox("bin", "install", "pyh", "--as", "../escape")
    assert bad.returncode == 2, bad.stderr
    no_traceback(bad)
    assert not (wenv.base / "escape").exists()


@pytest.mark.parametrize("text, expected", [
    (bins.render("chrome", "/opt/envbox/bin/envbox"), ("chrome", "/opt/envbox/bin/envbox")),
    (bins.render("a.b-c", "/path with space/envbox"), ("a.b-c", "/path with space/envbox")),
    ("#!/bin/sh\necho hi\n", None),
    ("#!/bin/bash\n# envbox-bin: profile=x\n#\nexec envbox launch x -- \"$@\"\n", None),
    ("#!/bin/sh\n# envbox-bin: profile=x\n#\nexec envbox launch y -- \"$@\"\n", None),  # marker and command disagree
    ("#!/bin/sh\n# envbox-bin: profile=../x\n#\nexec envbox launch ../x -- \"$@\"\n", None),
    ("", None),
])
def test_parse_wrapper(text, expected):
    assert bins.parse(text) == expected


@pytest.mark.parametrize("environ, uid, expected", [
    ({"ENVBOX_BIN_DIR": "/x"}, 0, "/x"),
    ({"HOME": "/home/u"}, 1000, "/home/u/.local/bin"),
    ({"HOME": "/root"}, 0, "/usr/local/bin"),
])
def test_bin_dir(environ, uid, expected):
    assert str(bins.bin_dir(environ, uid)) == expected
