"""Profile validation: real YAML in, a Profile or one clear error with file:line out."""

from __future__ import annotations

import pytest

from envbox.core.errors import ProfileError
from envbox.core.profile import load_profile

GOOD = """\
name: chrome
description: Chrome with its Python 2 helpers
command: [google-chrome, --no-first-run]
tools:
  python: "2.7"
  node: {dir: /opt/node-v18}
  gcc: {host: /usr/bin/gcc-12}
env: {FOO: bar, N: 3}
limits: {memory: 2G, cpu: 1.5, pids: 512}
desktop: {name: Chrome, icon: google-chrome, categories: [Network]}
"""


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_complete_profile_loads(tmp_path):
    prof = load_profile(write(tmp_path, GOOD, "chrome.yaml"), "user")
    assert prof.name == "chrome"
    assert prof.command == ("google-chrome", "--no-first-run")
    assert [(t.tool, t.describe()) for t in prof.tools] == [("python", "2.7"), ("node", "dir:/opt/node-v18"), ("gcc", "host:/usr/bin/gcc-12")]
    assert prof.env == (("FOO", "bar"), ("N", "3"))
    assert prof.limits.memory == 2 * 1024**3 and prof.limits.cpu == 1.5 and prof.limits.pids == 512
    assert prof.desktop.name == "Chrome" and prof.desktop.categories == ("Network",)


def test_name_defaults_to_file_name(tmp_path):
    prof = load_profile(write(tmp_path, 'command: ["true"]\n', "my-app.yaml"), "user")
    assert prof.name == "my-app"


BAD = [
    # (yaml, line, message fragment, hint fragment)
    ("comand: [x]\n", 1, "unknown key 'comand' in profile", "did you mean 'command'?"),
    ("command: [x]\ntools:\n  python: \"2.7\"\n  python: \"3\"\n", 4, "duplicate key 'python' (first on line 3)", None),
    ("tools:\n  python: 3.10\n", 2, "version 3.10 of python is read by YAML as the number 3.1", 'quote it: python: "3.10"'),
    ("tools:\n  node: 22\n", 2, "version 22 of node must be a string", 'quote it: node: "22"'),
    ("name: ../etc\n", 1, "bad profile name '../etc'", "lowercase letters"),
    ("name: -rf\n", 1, "bad profile name '-rf'", None),
    ("name: 'a b'\n", 1, "bad profile name 'a b'", None),
    ("command: \"a b\"\n", 1, "command must be a list of arguments, not a string", "command: [a, b]"),
    ("command: []\n", 1, "command must be a non-empty list", None),
    ("env: [A=1]\n", 1, "env must be a mapping", None),
    ("env: {A: [1]}\n", 1, "env.A must be a string", None),
    ("limits: {memory: -1}\n", 1, "limits.memory", None),
    ("limits: {memory: 1e100}\n", 1, "limits.memory", None),
    ("limits: {cpu: lots}\n", 1, "limits.cpu", None),
    ("limits: {pids: 0}\n", 1, "limits.pids", None),
    ("limits: {memroy: 1G}\n", 1, "unknown key 'memroy' in limits", "did you mean 'memory'?"),
    ("tools:\n  python: {host: relative/path}\n", 2, "must be an absolute path", None),
    ("tools:\n  python: {pip: x}\n", 2, "unknown key 'pip' in tools.python", None),
    ("tools:\n  Py/thon: \"2\"\n", 2, "bad tool name", None),
    ("- a\n- b\n", 1, "must be a mapping", None),
    ("", 1, "the file is empty", None),
    ("x: !!python/object/apply:os.system [id]\n", 1, "not allowed", None),
    ("a: [\n", 2, "invalid YAML", None),
    (b"command: [\xff]\n", 1, "not valid UTF-8", None),
]


@pytest.mark.parametrize("text,line,message,hint", BAD)
def test_bad_profiles_give_one_clear_error(tmp_path, text, line, message, hint):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path, "user")
    err = info.value
    assert err.message.startswith(f"{path}:{line}: "), err.message
    assert message in err.message
    assert "\n" not in err.message
    if hint:
        assert hint in (err.hint or "")


def test_directory_fifo_and_oversized_files_are_refused_quickly(tmp_path):
    import os

    (tmp_path / "dir.yaml").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "big.yaml").write_bytes(b"# x\n" * 300_000)
    for name, words in (("dir.yaml", "is a directory"), ("fifo.yaml", "not a regular file"), ("big.yaml", "limit")):
        with pytest.raises(ProfileError) as info:
            load_profile(tmp_path / name, "user")
        assert words in info.value.message
