"""Attacks on the layer store: crashes, lock holders killed, interrupted gc, tampering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import no_traceback
from harness import Victim, archive_release, tarball

TOOL = "command: [/usr/bin/demo]\ntools:\n  demo: \"1\"\n"


def demo_release(env, content: bytes = b"#!/bin/sh\necho demo-ok\n") -> None:
    archive_release(env, "demo", "1.0", tarball({"usr/bin/demo": content}))


def layers(env) -> list[str]:
    d = env.store / "layers"
    return sorted(os.listdir(d)) if d.exists() else []


def test_lock_holder_sigkilled_waiter_goes_on(env):
    """23: the builder holding the lock dies; the waiter takes over within seconds."""
    demo_release(env)
    env.write_profile("demo", TOOL)
    holder = env.envbox_popen("build", "demo", env={"ENVBOX_CRASH_AT": "build"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    holder.wait(timeout=60)  # crashed (SIGKILL) at the start of the build, holding the lock until death
    assert holder.returncode == -signal.SIGKILL
    started = time.monotonic()
    result = env.envbox("launch", "demo")
    assert result.returncode == 0 and result.stdout.strip() == "demo-ok", result.stderr
    assert time.monotonic() - started < 30


def test_lock_wait_times_out_naming_the_holder(root_env):
    """23: a stuck holder: the waiter gives up after ENVBOX_LOCK_TIMEOUT with its pid."""
    env = root_env
    demo_release(env)
    env.write_profile("demo", TOOL)
    assert env.envbox("plan", "demo").returncode == 0
    from envbox.core.catalog import load_catalog
    from envbox.sources import checks
    from pathlib import Path

    catalog = load_catalog((Path(env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d",), checks())
    key = catalog.of("demo")[0].recipe_key()
    locks = env.store / "locks"
    locks.mkdir(parents=True)
    holder = subprocess.Popen(["flock", str(locks / f"{key}.lock"), "sleep", "30"])
    try:
        time.sleep(0.3)
        result = env.envbox("launch", "demo", env={"ENVBOX_LOCK_TIMEOUT": "1"})
        assert result.returncode == 125
        assert "timed out after 1 s waiting for another build" in result.stderr and "held by pid" in result.stderr
        no_traceback(result)
    finally:
        holder.kill()
        holder.wait()


def test_interrupted_gc_leaves_layers_whole_or_absent(root_env):
    """24: gc killed while removing a layer: it is gone whole, the rest intact, verify passes."""
    env = root_env
    demo_release(env)
    env.write_profile("demo", TOOL)
    assert env.envbox("build", "demo").returncode == 0
    (env.user_profiles / "demo.yaml").unlink()
    crashed = env.envbox("gc", env={"ENVBOX_CRASH_AT": "gc"})
    assert crashed.returncode == -signal.SIGKILL
    assert layers(env) == []
    assert env.envbox("verify").returncode == 0
    env.write_profile("demo", TOOL)
    assert env.envbox("launch", "demo").stdout.strip() == "demo-ok"
    assert not any((env.store / "tmp").iterdir()), "the next build cleans gc's leftovers"


@pytest.mark.parametrize("tamper", ["flip-byte", "add-file", "file-to-symlink", "index-digest-traversal"])
def test_verify_reports_tampering_and_gc_stays_inside(root_env, tamper):
    """25: each kind of tampering is reported; gc never deletes outside the store."""
    env = root_env
    victim = Victim.plant(env.base / "victim")
    demo_release(env)
    env.write_profile("demo", TOOL)
    assert env.envbox("build", "demo").returncode == 0
    (digest,) = layers(env)
    layer = env.store / "layers" / digest
    target = layer / "usr" / "bin" / "demo"
    os.chmod(target.parent, 0o755)
    if tamper == "flip-byte":
        os.chmod(target, 0o755)
        data = bytearray(target.read_bytes())
        data[0] ^= 1
        target.write_bytes(bytes(data))
    elif tamper == "add-file":
        (target.parent / "extra").write_text("x")
    elif tamper == "file-to-symlink":
        target.unlink()
        os.symlink(str(victim.path / "secret"), target)
    else:
        index = next((env.store / "index").iterdir())
        data = json.loads(index.read_text())
        data["digest"] = "../../../victim"
        index.write_text(json.dumps(data))
    result = env.envbox("verify")
    assert result.returncode == 1, result.stdout
    if tamper == "index-digest-traversal":
        assert "bad index entry" in result.stdout
    else:
        assert f"{digest}: content changed" in result.stdout
    no_traceback(result)
    (env.user_profiles / "demo.yaml").unlink()
    env.envbox("gc")
    victim.check(env.store)


def test_crash_at_each_step_then_same_digest(root_env):
    """21: a crash at any step leaves a complete or absent layer; the rebuild's digest is the same."""
    env = root_env
    demo_release(env)
    env.write_profile("demo", TOOL)
    assert env.envbox("build", "demo").returncode == 0
    (reference,) = layers(env)
    for step in ("build", "extract", "rename", "index"):
        for d in ("layers", "index", "meta"):
            for name in os.listdir(env.store / d):
                p = env.store / d / name
                for root, dirs, _ in os.walk(p):
                    os.chmod(root, 0o755)
                subprocess.run(["rm", "-rf", str(p)], check=True)
        crashed = env.envbox("build", "demo", env={"ENVBOX_CRASH_AT": step})
        assert crashed.returncode == -signal.SIGKILL, step
        assert all(len(name) == 64 for name in layers(env)), "only complete layers are named by a digest"
        assert env.envbox("build", "demo").returncode == 0
        assert layers(env) == [reference], step
        assert env.envbox("verify").returncode == 0
