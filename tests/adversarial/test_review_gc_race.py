"""Review class 1: gc running while layers are built must never remove a referenced layer.

gc used to decide what to keep before it listed the store, and a builder held nothing between
renaming a layer into place and using it: a gc loop beside cold builds removed fresh layers of
existing profiles. Now gc holds the store lock exclusively (listing, then the reference scan,
then removal), builders hold it shared from before the rename until the index entry exists,
and every layer a process built or found stays pinned until that process exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from conftest import envbox_bin, no_traceback
from harness import archive_release, tarball

TOOLS = 6
ROUNDS = 3


def _release(env, name: str, version: str) -> None:
    script = f"#!/bin/sh\necho {name}-{version}-ok\n".encode()
    archive_release(env, name, version, tarball({f"usr/bin/{name}": script}))


def _profile(name: str) -> str:
    return f"command: [/usr/bin/{name}]\ntools:\n  {name}: latest\n"


def test_gc_loop_during_cold_builds_removes_nothing_referenced(env):
    stop = env.base / "stop-gc"
    gc_loop = env.popen(
        ["/bin/sh", "-c", f"n=0; while [ ! -e {stop} ]; do {envbox_bin()} gc >/dev/null 2>>{env.base}/gc.err || exit 9; n=$((n+1)); done; echo $n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        for rnd in range(ROUNDS):
            version = f"1.{rnd}"
            names = [f"t{rnd}x{i}" for i in range(TOOLS)]
            for name in names:
                _release(env, name, version)
                env.write_profile(name, _profile(name))
            # Half build ahead, half launch cold (build, then run at once): all while gc loops.
            procs = []
            for i, name in enumerate(names):
                verb = ("build", name) if i % 2 else ("launch", name)
                procs.append((name, verb[0], env.envbox_popen(*verb, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
            for name, verb, proc in procs:
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, f"{verb} {name}: {err}"
                assert "Traceback" not in err, err
                if verb == "launch":
                    assert out.strip() == f"{name}-{version}-ok", err
            time.sleep(0.2)  # a few more gc runs over the finished builds
            layers = json.loads(env.envbox("layers", "--json").stdout)
            used = {name for row in layers for name in row["profiles"]}
            assert set(names) <= used, f"profiles whose layer gc removed: {sorted(set(names) - used)}"
            for name in names:
                result = env.envbox("launch", name)
                no_traceback(result)
                assert result.returncode == 0 and result.stdout.strip() == f"{name}-{version}-ok", result.stderr
    finally:
        stop.touch()
        out, _ = gc_loop.communicate(timeout=120)
    assert gc_loop.returncode == 0, (env.base / "gc.err").read_text()
    assert int(out.strip()) >= ROUNDS, "gc ran too rarely for the test to mean anything"
    # Nothing unreferenced is kept for ever: with the profiles gone, one gc empties the store.
    for rnd in range(ROUNDS):
        for i in range(TOOLS):
            (env.user_profiles / f"t{rnd}x{i}.yaml").unlink()
    assert env.envbox("gc").returncode == 0
    assert os.listdir(env.store / "layers") == []


def test_gc_keeps_a_layer_pinned_by_a_builder_until_it_exits(env):
    """A layer whose profile is gone is still kept while the process that built it runs."""
    _release(env, "pinned", "1.0")
    env.write_profile("pinned", "command: [/bin/sh, -c, 'read x']\ntools:\n  pinned: latest\n")
    holder = env.envbox_popen("launch", "pinned", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (env.store / "layers").is_dir() or not os.listdir(env.store / "layers"):
        assert time.monotonic() < deadline and holder.poll() is None, holder.stderr.read() if holder.poll() is not None else "no layer"
        time.sleep(0.05)
    time.sleep(0.5)  # the app is running now
    (env.user_profiles / "pinned.yaml").unlink()
    result = env.envbox("gc")
    assert result.returncode == 0, result.stderr
    assert "in use by a running app" in result.stdout
    assert len(os.listdir(env.store / "layers")) == 1
    holder.communicate(b"\n", timeout=60)
    assert holder.returncode == 0
    assert env.envbox("gc").returncode == 0
    assert os.listdir(env.store / "layers") == []


def test_gc_removes_nothing_while_a_profile_cannot_be_resolved(env):
    """A profile gc cannot resolve (its catalog entry broken or gone) may use layers gc cannot
    name: gc refuses in one line instead of removing them, and works again once it is fixed."""
    _release(env, "solid", "1.0")
    env.write_profile("solid", _profile("solid"))
    assert env.envbox("build", "solid").returncode == 0
    before = sorted(os.listdir(env.store / "layers"))
    catalog = env.home / ".config" / "envbox" / "catalog.d" / "solid.yaml"
    good = catalog.read_text()
    catalog.write_text(good.replace("tool: solid", "tool: solidx"))
    result = env.envbox("gc")
    no_traceback(result)
    assert result.returncode == 125
    assert result.stderr.startswith("envbox: gc removed nothing: cannot tell which layers profile solid uses"), result.stderr
    assert "hint: fix or remove that profile" in result.stderr
    assert sorted(os.listdir(env.store / "layers")) == before
    catalog.write_text(good)
    assert env.envbox("gc").returncode == 0
    assert sorted(os.listdir(env.store / "layers")) == before
    (env.user_profiles / "solid.yaml").unlink()
    assert env.envbox("gc").returncode == 0
    assert os.listdir(env.store / "layers") == []
