"""Review class 6: state in a shared directory another user can plant. Without
XDG_RUNTIME_DIR the launch records live in /tmp/envbox-UID, which anyone can create first.
Every read of envbox's own state checks the directory's owner and mode (or refuses and says
so), never follows links, never blocks, caps sizes, and prints untrusted text escaped."""

from __future__ import annotations

import marshal
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import no_traceback

ESC = "\x1b]0;pwned\x07\x1b[2J\rEVIL"


def other_uid(env) -> int:
    """A user other than env's: the test user plants for root, root plants for the test user."""
    import pwd

    return pwd.getpwnam(os.environ.get("ENVBOX_TEST_USER", "envboxtest")).pw_uid if env.uid == 0 else 0


@pytest.fixture
def default_runtime(env):
    """env without XDG_RUNTIME_DIR: its runtime dir is /tmp/envbox-UID. When that exists on
    this machine (a real user's launches), a fresh name in /tmp stands in for it through
    ENVBOX_RUNTIME_DIR: the same shared /tmp, the same checks."""
    import tempfile

    from envbox.config.paths import Paths

    path = Path(f"/tmp/envbox-{env.uid}")
    del env.vars["XDG_RUNTIME_DIR"]
    if os.getuid() == env.uid:
        assert Paths.from_env({k: v for k, v in env.vars.items()}).runtime_dir == path
    if path.exists() or path.is_symlink():
        path = Path(tempfile.mktemp(prefix=f"envbox-review-{env.uid}-", dir="/tmp"))
        env.vars["ENVBOX_RUNTIME_DIR"] = str(path)
    yield path
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def refused(result, *words):
    assert result.returncode == 125, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("envbox: ") and lines[1].startswith("hint: "), result.stderr
    for word in words:
        assert word in lines[0], result.stderr
    no_traceback(result)


def plant_records(directory: Path) -> None:
    """What an attacker leaves: a FIFO, a link to /dev/zero, a forged record with escapes."""
    launches = directory / "launches"
    launches.mkdir(parents=True, exist_ok=True)
    os.mkfifo(launches / "1.launch")
    (launches / "2.launch").symlink_to("/dev/zero")
    (launches / "3.launch").write_bytes(marshal.dumps({
        "profile": ESC, "pid": 1, "started": time.time(), "backend": ESC, "cgroups": [ESC], "layers": [],
    }))
    (launches / "4.launch").write_bytes(b"\xff" * (1 << 20))  # large garbage


def test_ps_refuses_a_runtime_dir_planted_by_another_user(env, default_runtime):
    plant_records(default_runtime)
    for root, dirs, files in os.walk(default_runtime):
        os.chown(root, other_uid(env), other_uid(env))
    os.chmod(default_runtime, 0o755)
    start = time.monotonic()
    result = env.envbox("ps", timeout=30)
    assert time.monotonic() - start < 15
    refused(result, str(default_runtime), f"uid {other_uid(env)}")
    assert "\x1b" not in result.stdout + result.stderr


def test_ps_refuses_a_world_writable_runtime_dir(env, default_runtime):
    default_runtime.mkdir(mode=0o777)
    os.chmod(default_runtime, 0o777)
    os.chown(default_runtime, env.uid, env.gid)
    result = env.envbox("ps", timeout=30)
    refused(result, str(default_runtime), "writable by other users")


def test_ps_refuses_a_symlinked_runtime_dir(env, default_runtime):
    elsewhere = env.base / "elsewhere"
    plant_records(elsewhere)
    env.give(env.base)
    default_runtime.symlink_to(elsewhere)
    result = env.envbox("ps", timeout=30)
    refused(result, str(default_runtime), "symbolic link")


def test_launch_in_a_planted_runtime_dir_runs_and_says_it_is_not_recorded(env, default_runtime):
    default_runtime.mkdir(mode=0o755)
    os.chown(default_runtime, other_uid(env), other_uid(env))
    env.write_profile("p", "command: [sh, -c, 'exit 5']\n")
    result = env.envbox("launch", "p", timeout=60)
    assert result.returncode == 5, result.stderr
    assert "not recorded for 'envbox ps'" in result.stderr
    assert os.listdir(default_runtime) == []  # nothing written into the other user's directory


def test_ps_reads_its_own_dir_without_blocking_and_escapes_forged_text(env):
    """Even in the user's own runtime dir (an app may have written there): FIFOs and links are
    skipped without blocking, big files are capped, text is escaped."""
    runtime = Path(env.vars["XDG_RUNTIME_DIR"]) / "envbox"
    runtime.mkdir(mode=0o700)
    plant_records(runtime)
    env.give(env.base)
    start = time.monotonic()
    result = env.envbox("ps", timeout=30)
    assert time.monotonic() - start < 15
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\r" not in result.stdout
    assert "\\x1b]0;pwned\\x07" in result.stdout  # shown, escaped
    js = env.envbox("ps", "--json", timeout=30)
    assert js.returncode == 0 and "\x1b" not in js.stdout  # json escapes on its own


def test_a_live_launch_is_listed_and_a_planted_record_beside_it_is_harmless(env):
    env.write_profile("sleeper", "command: [sleep, '30']\n")
    proc = env.envbox_popen("launch", "sleeper")
    try:
        launches = Path(env.vars["XDG_RUNTIME_DIR"]) / "envbox" / "launches"
        for _ in range(100):
            if launches.is_dir() and any(launches.iterdir()):
                break
            time.sleep(0.1)
        os.mkfifo(launches / "99999.launch")
        env.give(env.base)
        result = env.envbox("ps", timeout=30)
        assert result.returncode == 0, result.stderr
        assert "sleeper" in result.stdout
    finally:
        proc.kill()
        proc.wait()


def test_plan_cache_in_a_dir_of_another_user_is_not_used(env):
    """A shared ENVBOX_CACHE_DIR whose plans/ another user controls: its entries (marshal,
    which trusts its input) are never loaded; the launch takes the full path."""
    cache = env.base / "shared-cache"
    cache.mkdir()
    env.vars["ENVBOX_CACHE_DIR"] = str(cache)
    marker = env.home / "forged-ran"
    env.write_profile("p", "command: [sh, -c, 'exit 4']\n")
    env.give(env.base)
    assert env.envbox("launch", "p").returncode == 4
    entries = list((cache / "plans").iterdir())
    assert len(entries) == 1
    entry = marshal.loads(entries[0].read_bytes())
    entry["plan"]["argv"] = ["sh", "-c", f"touch {marker}; exit 9"]
    entries[0].write_bytes(marshal.dumps(entry))
    # Still the user's own: the forged entry would be used (this is the user's own cache).
    # Now another user takes the directory over:
    for path in (cache / "plans", entries[0]):
        os.chown(path, other_uid(env), other_uid(env))
    result = env.envbox("launch", "p", env={"ENVBOX_TRACE": "1"})
    assert result.returncode == 4, result.stderr
    assert not marker.exists()
    assert "fast path" not in result.stderr


def test_plan_cache_entry_that_is_a_fifo_or_link_is_skipped(env):
    env.write_profile("p", "command: [sh, -c, 'exit 4']\n")
    assert env.envbox("launch", "p").returncode == 4
    plans = Path(env.vars["XDG_CACHE_HOME"]) / "envbox" / "plans"
    (entry,) = plans.iterdir()
    for plant in ("fifo", "zero"):
        entry.unlink()
        os.mkfifo(entry) if plant == "fifo" else entry.symlink_to("/dev/zero")
        env.give(env.base)
        result = env.envbox("launch", "p", timeout=30)
        assert result.returncode == 4, result.stderr


def test_trust_dir_of_another_user_is_refused(env):
    proj = env.home / "proj"
    proj.mkdir()
    (proj / "envbox.yaml").write_text("command: [sh, -c, 'exit 6']\n")
    env.give(env.base)
    assert env.envbox("trust", cwd=str(proj)).returncode == 0
    assert env.envbox("run", "--", "sh", "-c", "exit 6", cwd=str(proj), env={"ENVBOX_NO_FAST": "1"}).returncode == 6
    trust = Path(env.vars["XDG_STATE_HOME"]) / "envbox" / "trust"
    os.chown(trust, other_uid(env), other_uid(env))
    result = env.envbox("run", "--", "true", cwd=str(proj), env={"ENVBOX_NO_FAST": "1"})
    refused(result, str(trust), "belongs to uid")


@pytest.mark.parametrize(
    "text,shown",
    [
        ("plain", "plain"),
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
        ("\x7f\x9b", "\\x7f\\x9b"),
        ("\u202eevil", "\\u202eevil"),
        ("bad\udcffbyte", "bad\\udcffbyte"),
    ],
)
def test_printable(text, shown):
    from envbox.core.names import printable

    assert printable(text) == shown


def test_errors_are_printed_escaped():
    from envbox.core.errors import EnvboxError

    rendered = EnvboxError("file \x1b[2J.yaml: bad", "remove \x1b]0;x\x07").render()
    assert "\x1b" not in rendered and "\x07" not in rendered
    assert rendered.count("\n") == 1


def test_store_of_another_user_is_refused(env):
    """The store's index, manifests and locks are trusted as envbox's own: never in a
    directory that another user owns or can write."""
    env.write_profile("p", "command: [sh, -c, 'exit 4']\n")
    store = env.store
    store.mkdir(parents=True)
    os.chown(store, other_uid(env), other_uid(env))
    for args in (["plan", "p"], ["layers"]):
        refused(env.envbox(*args, env={"ENVBOX_NO_FAST": "1"}), str(store), "belongs to uid")
    os.chown(store, env.uid, env.gid)
    os.chmod(store, 0o777)
    refused(env.envbox("plan", "p"), str(store), "writable by other users")


def test_package_lists_never_come_from_a_cache_another_user_can_write(env):
    """A deb build with a download cache someone else can write: refused before apt-get runs
    (the lists decide which sha256 each package must have)."""
    cache = env.base / "shared"
    cache.mkdir()
    os.chmod(cache, 0o777)
    env.vars["ENVBOX_CACHE_DIR"] = str(cache)
    env.write_profile("py", 'command: [python, -V]\ntools:\n  python: "3.11"\n')
    env.give(env.base)
    os.chmod(cache, 0o777)
    result = env.envbox("build", "py", timeout=120)
    assert result.returncode == 125, result.stderr
    assert "the download cache cannot be used for package lists" in result.stderr and "writable by other users" in result.stderr
    assert not (cache / "downloads" / "apt").exists() or not any((cache / "downloads" / "apt").iterdir())


def test_paths_with_escape_sequences_are_printed_escaped(env):
    """A project in a directory whose name carries escape sequences (a cloned repository):
    trust, plan and errors print the path escaped."""
    proj = env.home / "repo\x1b]0;owned\x07\x1b[2J"
    proj.mkdir()
    (proj / "envbox.yaml").write_text("command: [sh, -c, 'exit 0']\nbogus: 1\n")
    env.give(env.base)
    for args in (["trust"], ["plan"]):
        result = env.envbox(*args, cwd=str(proj))
        assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr, result
        assert "\\x1b]0;owned\\x07" in result.stdout + result.stderr
    (proj / "envbox.yaml").write_text("command: [sh, -c, 'exit 0']\n")
    result = env.envbox("trust", cwd=str(proj))
    assert result.returncode == 0 and "\x1b" not in result.stdout and "\\x1b[2J" in result.stdout
