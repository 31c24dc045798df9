"""Attacks through profiles, catalogs and project discovery (cases 1-12)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import no_traceback


def one_error(result, code=125):
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.startswith("envbox: ")
    assert all(l.startswith(("envbox: ", "hint: ")) for l in result.stderr.splitlines()), result.stderr
    no_traceback(result)


@pytest.mark.parametrize("scope", ["user", "system", "project", "catalog"])
@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/name:os.system", "!!python/object/new:os.system"])
def test_code_running_yaml_tags_in_every_scope(env, scope, tag):
    """1: the marker the tag would create never appears; the error names file:line."""
    marker = env.base / "pwned"
    payload = f"x: {tag} ['touch {marker}']\n"
    if scope == "user":
        path = env.write_profile("tagged", payload)
        args, cwd = ["launch", "tagged"], env.home
    elif scope == "system":
        path = env.write_profile("tagged", payload, directory=Path(env.vars["ENVBOX_SYSTEM_DIR"]) / "profiles")
        args, cwd = ["launch", "tagged"], env.home
    elif scope == "project":
        proj = env.home / "proj"
        proj.mkdir()
        path = proj / "envbox.yaml"
        path.write_text(payload)
        env.give(env.home)
        args, cwd = ["trust"], proj
    else:
        catalog = Path(env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d"
        catalog.mkdir(parents=True)
        path = catalog / "evil.yaml"
        path.write_text(payload)
        env.write_profile("needs-catalog", "command: [sh]\ntools:\n  python: \"2.7\"\n")
        args, cwd = ["plan", "needs-catalog"], env.home
    result = env.envbox(*args, cwd=str(cwd))
    one_error(result)
    assert f"{path}:1: YAML tag" in result.stderr
    assert not marker.exists()


def pathological(env, kind: str) -> Path:
    proj = env.home / "proj"
    proj.mkdir()
    path = proj / "envbox.yaml"
    if kind == "50MB":
        with open(path, "wb") as f:
            f.truncate(50 << 20)
    elif kind == "deep-nesting":
        path.write_text("a: " + "[" * 10000 + "]" * 10000 + "\n")
    elif kind == "10MB-line":
        path.write_text("description: " + "x" * (10 << 20) + "\n")
    elif kind == "invalid-utf8":
        path.write_bytes(b"command: [\xff\xfe]\n")
    elif kind == "empty":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-dev-zero":
        os.symlink("/dev/zero", path)
    elif kind == "mode-000":
        path.write_text("command: [sh]\n")
        path.chmod(0)
    env.give(env.home)
    if path.exists() and not path.is_symlink() and kind != "directory":
        os.chmod(path, 0 if kind == "mode-000" else 0o644)
    return proj


@pytest.mark.parametrize("kind", ["50MB", "deep-nesting", "10MB-line", "invalid-utf8", "empty", "directory", "fifo", "symlink-dev-zero", "mode-000"])
def test_pathological_project_files(env, kind):
    """2: each gives one clear error within seconds; a FIFO never blocks."""
    if kind == "mode-000" and env.mode == "root":
        pytest.skip("root reads a mode-000 file; the case is about a user who cannot")
    proj = pathological(env, kind)
    started = time.monotonic()
    result = env.envbox("trust", cwd=str(proj), timeout=30)
    assert time.monotonic() - started < 10
    one_error(result)


@pytest.mark.parametrize(
    "text,field",
    [
        ("limits: {memory: -1}\n", "limits.memory"),
        ("limits: {memory: 1e100}\n", "limits.memory"),
        ("limits: {cpu: lots}\n", "limits.cpu"),
        ('command: "a b"\n', "command must be a list"),
        ("env: [A=1]\n", "env must be a mapping"),
        ("command: null\n", "command must be a non-empty list"),
        ("tools: {python: null}\n", "tools.python"),
        ("1: x\n", "must be a string"),
        ("tools: {python: [2, 7]}\n", "tools.python"),
        ("desktop: {categories: Network}\n", "desktop.categories"),
    ],
)
def test_type_confusion_names_the_field(root_env, text, field):
    """3"""
    root_env.write_profile("typed", text)
    result = root_env.envbox("plan", "typed")
    one_error(result)
    assert field in result.stderr


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "-rf", "--help", "a\nb", "x" * 300, "abc\u202edcba", " leading", "UPPER", "a..b"],
)
def test_hostile_profile_names_are_rejected(root_env, name):
    """5: rejected by the one pattern; nothing created outside envbox's directories."""
    before = set(os.listdir(root_env.base))
    args = ["launch", "--", name] if name.startswith("-") else ["launch", name]
    result = root_env.envbox(*args)
    assert result.returncode == 2, (name, result.stderr)
    assert result.stderr.startswith("envbox: ")
    no_traceback(result)
    assert set(os.listdir(root_env.base)) <= before | {"home"}


@pytest.mark.parametrize("name", ["a\x00b", "../x", "-rf", "memory.max"])
def test_hostile_names_inside_a_profile(root_env, name):
    """5: a profile's own name: key with the same hostile values (memory.max is fine as a name
    but must never reach a cgroup control file: cgroup names carry a prefix)."""
    import json

    quoted = json.dumps(name)
    root_env.write_profile("named", f"name: {quoted}\ncommand: [sh]\n")
    result = root_env.envbox("plan", "named")
    if name == "memory.max":
        one_error(result)  # the name must match the file name
        assert "differs from the file name" in result.stderr
    else:
        one_error(result)


def test_memory_max_profile_does_not_touch_control_files(root_env):
    """5/37: a profile literally called memory.max gets its own prefixed cgroup."""
    if not os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        pytest.skip("needs cgroup v1 memory")
    root_env.write_profile("memory.max", "command: [cat, /proc/self/cgroup]\nlimits: {memory: 64M}\n")
    result = root_env.envbox("launch", "memory.max")
    assert result.returncode == 0, result.stderr
    memory = [l for l in result.stdout.splitlines() if ":memory:" in l][0]
    assert "/envbox/envbox-memory.max-" in memory


def test_extends_thousand_deep_and_contents_never_echoed(root_env):
    """6"""
    env = root_env
    for i in range(1000):
        env.write_profile(f"d{i}", f"extends: d{i + 1}\nenv: {{SECRET{i}: hunter2-{i}}}\n")
    env.write_profile("d1000", "command: [sh]\n")
    result = env.envbox("plan", "d0")
    one_error(result)
    assert "longer than 16" in result.stderr and "hunter2" not in result.stderr


def test_walk_up_from_a_deleted_cwd(env):
    """7"""
    gone = env.home / "gone"
    gone.mkdir()
    env.give(gone)
    script = f"cd {gone} && rmdir {gone} && exec $0 run -- true"
    result = env.cmd(["sh", "-c", script, __import__("conftest").envbox_bin()])
    one_error(result)
    assert "current directory no longer exists" in result.stderr


def test_walk_up_stops_at_an_unreadable_parent(env):
    """7"""
    if env.mode == "root":
        pytest.skip("root can read any directory")
    outer = env.home / "outer"
    inner = outer / "locked" / "inner"
    inner.mkdir(parents=True)
    (outer / "envbox.yaml").write_text("command: [sh]\n")
    env.give(env.home)
    os.chmod(outer / "locked", 0o311)  # traversable, not listable
    result = env.envbox("run", "--", "true", cwd=str(inner))
    one_error(result)


@pytest.mark.parametrize("target", ["/etc/shadow", "other-user"])
def test_project_file_symlinked_to_a_file_we_must_not_read(env, target, tmp_path):
    """7: envbox.yaml -> /etc/shadow or another user's file: refused without reading it."""
    proj = env.home / "proj"
    proj.mkdir()
    if target == "other-user":
        other = env.base / "other.yaml"
        other.write_text("command: [sh]\n")
        os.chown(other, 65534, 65534)
        target = str(other)
    os.symlink(target, proj / "envbox.yaml")
    env.give(env.home)
    result = env.envbox("trust", cwd=str(proj))
    one_error(result)
    assert "symlink" in result.stderr and "root:" not in result.stderr


def test_project_cannot_shadow_a_named_profile(env):
    """8: a project file named like a system profile does not replace it."""
    env.write_profile("tool", "command: [sh, -c, 'echo system']\n", directory=Path(env.vars["ENVBOX_SYSTEM_DIR"]) / "profiles")
    proj = env.home / "proj"
    proj.mkdir()
    (proj / "envbox.yaml").write_text("name: tool\ncommand: [sh, -c, 'echo project']\n")
    env.give(env.home)
    result = env.envbox("launch", "tool", cwd=str(proj))
    assert result.stdout.strip() == "system"
    env.envbox("trust", cwd=str(proj))
    result = env.envbox("launch", "tool", cwd=str(proj))
    assert result.stdout.strip() == "system", "even trusted, a project file is not a named profile"


def test_trust_is_lost_when_the_file_becomes_a_symlink_to_an_identical_copy(env):
    """10"""
    proj = env.home / "proj"
    proj.mkdir()
    (proj / "envbox.yaml").write_text("command: [sh, -c, 'echo ok']\n")
    env.give(env.home)
    assert env.envbox("trust", cwd=str(proj)).returncode == 0
    (proj / "copy.yaml").write_text("command: [sh, -c, 'echo ok']\n")
    os.unlink(proj / "envbox.yaml")
    os.symlink("copy.yaml", proj / "envbox.yaml")
    env.give(env.home)
    result = env.envbox("run", "--", "true", cwd=str(proj))
    one_error(result)


def test_duplicate_release_in_one_catalog_directory(root_env):
    """4: the same tool and version twice in one scope: both places named."""
    catalog = Path(root_env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d"
    catalog.mkdir(parents=True)
    entry = "tool: demo\nreleases:\n  - version: \"1.0\"\n    source: {kind: archive, url: /x.tar.gz, sha256: \"" + "a" * 64 + "\"}\n"
    (catalog / "a.yaml").write_text(entry)
    (catalog / "b.yaml").write_text(entry)
    result = root_env.envbox("catalog")
    one_error(result)
    assert "a.yaml:3" in result.stderr and "b.yaml:3" in result.stderr
