"""Real releases through envbox: the seed case, Python 3.13 beside host programs, the store.

Marked `network`: they download from Debian's archive (and PyPI/npm for node). Downloads
are shared between tests of one mode (tests/conftest.py: shared_cache).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import private_cache, no_traceback, shared_cache

pytestmark = [pytest.mark.network, pytest.mark.slow]

PROBE = "import sys, ssl, json, sqlite3; print(sys.version.split()[0])"


def builds(env) -> list[str]:
    log = env.store / "builds.log"
    return log.read_text().splitlines() if log.exists() else []


def test_seed_case_two_pythons_at_once(env):
    shared_cache(env)
    env.write_profile("old", "command: [sh, -c]\ntools:\n  python: \"2.7\"\n")
    env.write_profile("new", "command: [sh, -c]\ntools:\n  python: \"3.9\"\n")
    assert env.envbox("build", "old").returncode == 0
    assert env.envbox("build", "new").returncode == 0
    gate = env.home / "gate"
    old = env.envbox_popen(
        "launch", "old", "--", f"/usr/bin/python -c '{PROBE}'; while [ ! -e {gate} ]; do sleep 0.02; done",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        new = env.envbox("launch", "new", "--", f"/usr/bin/python -c '{PROBE}'")
        assert new.returncode == 0, new.stderr
        assert new.stdout.strip() == "3.9.2"
        assert old.poll() is None
    finally:
        gate.touch()
        out, err = old.communicate(timeout=60)
    assert old.returncode == 0, err
    assert out.strip() == "2.7.18"
    assert not os.path.lexists("/usr/bin/python")


def test_python_313_private_libs_keep_host_programs_working(env):
    shared_cache(env)
    env.write_profile("py313", "command: [sh, -c]\ntools:\n  python: \"3.13\"\n")
    script = (
        f"/usr/bin/python -c '{PROBE}; print(ssl.OPENSSL_VERSION)' && ssh -V 2>&1 && /bin/sh -c true "
        "&& apt-get --version | head -1 && /usr/bin/python3.11 -c 'import ssl; print(ssl.OPENSSL_VERSION)'"
        " && python3 --version"
    )
    result = env.envbox("launch", "py313", "--", script, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3.13.")
    assert lines[1].startswith("OpenSSL 3.5")
    assert lines[2].startswith("OpenSSH") and "OpenSSL 3.0" in lines[2]
    assert lines[3].startswith("apt ")
    assert lines[4].startswith("OpenSSL 3.0"), "host python3.11 keeps the host's OpenSSL"
    assert lines[5].startswith("Python 3.13."), "a 3.x release provides /usr/bin/python3"


def test_second_launch_downloads_and_extracts_nothing(root_env):
    env = root_env
    shared_cache(env)
    env.write_profile("old", "command: [/usr/bin/python, -c]\ntools:\n  python: \"2.7\"\n")
    assert env.envbox("launch", "old", "--", "print(1)", timeout=600).returncode == 0
    assert len(builds(env)) == 1
    layer = next((env.store / "layers").iterdir())
    before = os.stat(layer)
    # No network at all (a fresh network namespace has only a down loopback), and the full CLI
    # path, not the plan cache: the store alone must be enough.
    result = env.cmd(["unshare", "--net", envbox_path(), "launch", "old", "--", "print(2)"], env={"ENVBOX_NO_FAST": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    assert len(builds(env)) == 1, "no second build"
    assert os.stat(layer).st_ctime_ns == before.st_ctime_ns
    assert not any((env.store / "tmp").iterdir()), "nothing was extracted"


def envbox_path() -> str:
    from conftest import envbox_bin

    return envbox_bin()


def test_eight_concurrent_launches_on_an_empty_store_build_once(env):
    shared_cache(env)
    env.write_profile("old", "command: [/usr/bin/python, -c]\ntools:\n  python: \"2.7\"\n")
    procs = [env.envbox_popen("launch", "old", "--", f"print({i})", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for i, (out, err, code) in enumerate(results):
        assert code == 0, err
        assert out.strip() == str(i)
        assert "Traceback" not in err
    assert len(builds(env)) == 1, builds(env)


@pytest.mark.parametrize("step", ["build", "extract", "rename", "index"])
def test_a_build_killed_at_each_step_leaves_a_working_store(env, step):
    shared_cache(env)
    env.write_profile("old", "command: [/usr/bin/python, -c]\ntools:\n  python: \"2.7\"\n")
    crashed = env.envbox("build", "old", env={"ENVBOX_CRASH_AT": step}, timeout=600)
    assert crashed.returncode == -signal.SIGKILL
    assert builds(env) == []
    result = env.envbox("launch", "old", "--", "import sys; print(sys.version_info[:2])", timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 7)"
    verify = env.envbox("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert len(list((env.store / "layers").iterdir())) == 1
    assert not any((env.store / "tmp").iterdir())


def test_lock_file_pins_and_frozen(root_env):
    env = root_env
    shared_cache(env)
    profile = env.write_profile("old", "command: [/usr/bin/python, -c]\ntools:\n  python: \"2.7\"\n")
    result = env.envbox("lock", "old", timeout=600)
    assert result.returncode == 0, result.stderr
    lock = profile.with_name("old.lock")
    import json

    data = json.loads(lock.read_text())
    entry = data["tools"]["python"]
    assert entry["version"] == "2.7.18" and len(entry["digest"]) == 64
    assert any(a["name"].startswith("python2.7_") and len(a["sha256"]) == 64 for a in entry["artifacts"])
    assert env.envbox("launch", "--frozen", "old", "--", "print(1)").returncode == 0
    # A lock that pins a release the catalog no longer has: --frozen refuses.
    entry["version"] = "2.7.17"
    lock.write_text(json.dumps(data))
    result = env.envbox("launch", "--frozen", "old", "--", "print(1)")
    assert result.returncode == 125 and "no longer offers" in result.stderr
    no_traceback(result)


def test_gc_keeps_referenced_and_in_use_layers(root_env):
    """(3.9: no bundled profile uses it, so only these two profiles reference its layer.)"""
    env = root_env
    private_cache(env)  # gc prunes the download cache too
    env.write_profile("old", "command: [/usr/bin/python, -c]\ntools:\n  python: \"3.9\"\n")
    env.write_profile("tmpuse", "command: [/usr/bin/python, -c]\ntools:\n  python: \"3.9\"\n")
    assert env.envbox("build", "old", timeout=600).returncode == 0
    proc = env.envbox_popen("launch", "tmpuse", "--", "import time; print('up', flush=True); time.sleep(30)", stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        (env.user_profiles / "old.yaml").unlink()
        (env.user_profiles / "tmpuse.yaml").unlink()
        result = env.envbox("gc")
        assert "in use" in result.stdout, result.stdout
        assert len(list((env.store / "layers").iterdir())) == 1
    finally:
        proc.kill()
        proc.wait(timeout=10)
    result = env.envbox("gc")
    assert "no profile uses it" in result.stdout, result.stdout
    assert list((env.store / "layers").iterdir()) == []


def _tree_size(path) -> int:
    return sum(os.lstat(os.path.join(top, n)).st_size for top, _, files in os.walk(path) for n in files)


def test_gc_prunes_the_download_cache_to_what_later_builds_need(root_env):
    """After building Python 2.7 only: gc --dry-run shows sizes and removes nothing; gc keeps
    the layer's own downloads (a repair rebuilds from them) and drops apt lists no pending
    build needs, and downloads nothing uses."""
    import json

    env = root_env
    private_cache(env)
    downloads = env.base / "cache" / "downloads"
    env.write_profile("old", "command: [/usr/bin/python, -c]\ntools:\n  python: \"2.7\"\n")
    assert env.envbox("build", "old", timeout=600).returncode == 0
    (index,) = (env.store / "index").iterdir()
    own = {a["sha256"] for a in json.loads(index.read_text())["artifacts"]}
    before = _tree_size(downloads)
    dry = env.envbox("gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["ITEM", "SIZE", "WHY"]
    assert any(line.startswith("apt/bullseye-") and "/lists " in line and "MiB" in line for line in dry.stdout.splitlines()), dry.stdout
    assert "would free" in dry.stderr and "nothing removed" in dry.stderr
    assert _tree_size(downloads) == before, "--dry-run removed something"
    done = env.envbox("gc")
    assert done.returncode == 0, done.stderr
    assert not list(downloads.glob("apt/bullseye-*/lists")), "bullseye has nothing left to build"
    assert own <= set(os.listdir(downloads / "sha256")), "the layer's own downloads stay"
    assert set(os.listdir(downloads / "sha256")) - own == set(), "downloads nothing uses go"
    assert _tree_size(downloads) < before
    # What stays is what the README says: the packages of Python 2.7 (~5 MB), nothing else big
    # (but the lists of trixie, which the bundled node profile still needs, if the shared cache
    # had them, and downloads other tests have in flight).
    big = [os.path.join(top, n) for top, _, files in os.walk(downloads) for n in files
           if os.lstat(os.path.join(top, n)).st_size > 100_000]
    unexpected = [p for p in big if os.path.basename(p) not in own and "/apt/trixie-" not in p and "/tmp/" not in p]
    assert unexpected == [], unexpected
    # A later build from the pruned suite updates its lists again; the packages come from the
    # kept downloads (the rebuilt layer has the same digest).
    (digest,) = os.listdir(env.store / "layers")
    os.chmod(env.store / "layers" / digest, 0o755)
    (env.store / "layers" / digest / "planted").write_text("x")
    repaired = env.envbox("repair", timeout=600)
    assert repaired.returncode == 0, repaired.stderr
    assert os.listdir(env.store / "layers") == [digest]
