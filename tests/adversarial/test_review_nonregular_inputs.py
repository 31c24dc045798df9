"""Review class 4: non-regular files as inputs. Every file envbox opens by a path that a user,
catalog, profile or project supplies is opened without blocking: a FIFO, a device or a link
to /dev/zero fails at once with one line naming the file; whole-file reads are capped."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from conftest import no_traceback
from harness import archive_release, tarball

FAST = 30  # seconds: a blocked open would wait forever; anything near this is a hang


def one_error(result, *words):
    assert result.returncode == 125, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("envbox: "), result.stderr
    assert all(l.startswith(("envbox: ", "hint: ")) for l in lines), result.stderr
    # Progress says which phase runs ("envbox: building ..."); the error is the last envbox: line.
    error = [l for l in lines if l.startswith("envbox: ")][-1]
    assert sum(1 for l in lines if l.startswith("hint: ")) <= 1, result.stderr
    for word in words:
        assert word in error, result.stderr
    no_traceback(result)


def timed(env, *args, cwd=None):
    start = time.monotonic()
    result = env.envbox(*args, timeout=FAST, cwd=str(cwd or env.home))
    return result, time.monotonic() - start


def fifo(path: Path, env) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path, 0o644)
    env.give(env.base)
    return path


def test_local_archive_url_that_is_a_fifo(env):
    """A catalog's local archive path is a FIFO: the build fails at once, naming it."""
    blob = tarball({"usr/bin/tool": b"#!/bin/sh\necho hi\n"})
    path = archive_release(env, "tool", "1.0", blob)
    path.unlink()
    fifo(path, env)
    env.write_profile("p", "command: [tool]\ntools:\n  tool: \"1.0\"\n")
    result, took = timed(env, "build", "p")
    one_error(result, str(path), "FIFO")
    assert took < FAST / 2


def test_local_archive_url_that_links_to_dev_zero(env):
    blob = tarball({"usr/bin/tool": b"x"})
    path = archive_release(env, "tool", "1.0", blob)
    path.unlink()
    path.symlink_to("/dev/zero")
    env.write_profile("p", "command: [tool]\ntools:\n  tool: \"1.0\"\n")
    result, _ = timed(env, "build", "p")
    one_error(result, str(path), "character device")


@pytest.mark.parametrize("target", ["fifo", "dev-zero-link", "directory"])
def test_desktop_install_from_a_non_regular_file(env, target):
    env.write_profile("app", "command: [sh, -c, 'true']\n")
    where = env.base / "share" / "odd.desktop"
    where.parent.mkdir(parents=True, exist_ok=True)
    if target == "fifo":
        fifo(where, env)
    elif target == "dev-zero-link":
        where.symlink_to("/dev/zero")
    else:
        where.mkdir()
    env.give(env.base)
    result, _ = timed(env, "desktop", "install", "app", "--from", str(where))
    one_error(result, str(where), {"fifo": "FIFO", "dev-zero-link": "character device", "directory": "directory"}[target])


def test_profile_desktop_from_that_is_a_fifo(env):
    where = fifo(env.base / "share" / "p.desktop", env)
    env.write_profile("app", f"command: [sh, -c, 'true']\ndesktop:\n  from: {where}\n")
    result, _ = timed(env, "desktop", "install", "app")
    one_error(result, str(where), "FIFO")


@pytest.mark.parametrize("which", ["profile", "catalog", "lock"])
def test_config_files_that_are_fifos(env, which):
    if which == "profile":
        path = fifo(env.user_profiles / "p.yaml", env)
    elif which == "catalog":
        env.write_profile("p", "command: [sh]\ntools:\n  python: \"2.7\"\n")
        path = fifo(Path(env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d" / "evil.yaml", env)
    else:
        env.write_profile("p", "command: [sh]\n")
        path = fifo(env.user_profiles / "p.lock", env)
    result, _ = timed(env, "plan", "p")
    one_error(result, str(path), "FIFO")


def test_lock_file_that_links_to_dev_zero(env):
    env.write_profile("p", "command: [sh]\n")
    (env.user_profiles / "p.lock").symlink_to("/dev/zero")
    result, _ = timed(env, "plan", "p")
    one_error(result, "p.lock", "character device")


def test_project_file_and_trust_record_that_are_fifos(env):
    proj = env.home / "proj"
    proj.mkdir()
    project = fifo(proj / "envbox.yaml", env)
    result, _ = timed(env, "trust", cwd=proj)
    one_error(result, str(project), "FIFO")
    # A real project file, trusted, whose trust record is then replaced by a FIFO.
    project.unlink()
    project.write_text("command: [sh, -c, 'exit 3']\n")
    env.give(env.base)
    assert env.envbox("trust", cwd=str(proj)).returncode == 0
    records = list((Path(env.vars["XDG_STATE_HOME"]) / "envbox" / "trust").glob("*.json"))
    assert len(records) == 1
    records[0].unlink()
    fifo(records[0], env)
    result, _ = timed(env, "run", "--", "true", cwd=proj)
    one_error(result, "not trusted")


def test_download_cache_entry_that_is_a_fifo_is_replaced(env):
    """A FIFO planted where a cached download would be is dropped and the file fetched again."""
    blob = tarball({"usr/bin/tool": b"#!/bin/sh\necho from-tool\n"})
    archive_release(env, "tool", "1.0", blob)
    sha = hashlib.sha256(blob).hexdigest()
    fifo(Path(env.vars["XDG_CACHE_HOME"]) / "envbox" / "downloads" / "sha256" / sha, env)
    env.write_profile("p", "command: [tool]\ntools:\n  tool: \"1.0\"\n")
    result, _ = timed(env, "launch", "p")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-tool"


# ---- the one reader, table-driven -------------------------------------------------------------


def _make(kind: str, where: Path) -> Path:
    path = where / kind
    if kind == "regular":
        path.write_bytes(b"data")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "link-to-regular":
        (where / "target").write_bytes(b"data")
        path.symlink_to(where / "target")
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "too-big":
        path.write_bytes(b"x" * 101)
    return path


@pytest.mark.parametrize(
    "kind,follow,expect",
    [
        ("regular", False, b"data"),
        ("link-to-regular", True, b"data"),
        ("link-to-regular", False, "is a symbolic link"),
        ("link-to-dev-zero", True, "is a character device, not a regular file"),
        ("fifo", False, "is a FIFO, not a regular file"),
        ("link-to-dev-zero", False, "is a symbolic link"),
        ("fifo", True, "is a FIFO, not a regular file"),
        ("directory", True, "is a directory, not a file"),
        ("socket", True, "not a regular file"),
        ("too-big", True, "more than the 100-byte limit"),
    ],
)
def test_read_limited(tmp_path, kind, follow, expect):
    from envbox import fsio

    path = _make(kind, tmp_path)
    if isinstance(expect, bytes):
        assert fsio.read_limited(path, limit=100, follow=follow)[0] == expect
        return
    with pytest.raises(fsio.FileRefused) as info:
        fsio.read_limited(path, limit=100, follow=follow)
    assert expect in info.value.why and not info.value.missing
    assert "\n" not in info.value.why


def test_missing_files_are_told_apart(tmp_path):
    from envbox import fsio

    with pytest.raises(fsio.FileRefused) as info:
        fsio.read_limited(tmp_path / "absent", limit=10)
    assert info.value.missing
    assert fsio.read_quiet(tmp_path / "absent", limit=10) is None


def test_no_other_bounded_reader_copies():
    """The whole package opens given paths for reading through fsio only (the search for the
    class: no O_NOFOLLOW|O_NONBLOCK read of a whole file outside fsio.py)."""
    root = Path(__file__).resolve().parents[2] / "envbox"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        if path.name != "fsio.py" and "O_NONBLOCK" in text and "O_RDONLY" in text and "os.read(" in text:
            offenders.append(str(path))
    assert offenders == []
