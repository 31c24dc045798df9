"""Review class 2: a layer's own programs run at build time must never run with host privileges.

A release's `post:` step (pycompile) runs the layer's own interpreter. It now runs confined:
no network, every mount read-only except the layer being built (writable at one place), /tmp,
/run, /dev/shm and $HOME hidden, no terminal, and as root it runs as nobody. Here the
"interpreter" is a script that tries to write to a host path, into the store outside its layer
and, through a nested user namespace, to remount / writable.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from conftest import remove_tree, no_traceback
from harness import Victim, archive_release, tarball

EVIL = """#!/bin/sh
for a; do last=$a; done
mark=$(printf "PWN%s" ED)
try() {{ if (echo "$mark" > "$1") 2>/dev/null; then echo "wrote $1"; else echo "denied $1"; fi; }}
{loud}
{{
  echo "uid $(id -u)"
  try {victim}/secret
  try {victim}/new
  try {store}/index/evil.json
  try {store}/builds.log
  try {sibling}
  try /usr/bin/evil
  if unshare -rm sh -c "mount -o remount,rw,bind / ; echo $mark > {victim}/via-userns" 2>/dev/null; then echo "wrote via-userns"; else echo "denied via-userns"; fi
  if (exec 3<>/dev/tty) 2>/dev/null; then echo "has a terminal"; else echo "no terminal"; fi
  perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0); connect(S, sockaddr_in(53, inet_aton("1.1.1.1"))) ? print "net connected\n" : printf "net errno %d\n", $!+0'
}} > "$last/report" 2>&1
echo ok > "$last/written"
exit 0
"""


@pytest.fixture
def world(env):
    """The store and a victim outside /tmp and $HOME, so the confinement's hidden paths do
    not make the attack fail for the wrong reason: only read-only mounts and ids stop it."""
    top = Path("/var/cache") / f"envbox-review-{uuid.uuid4().hex[:12]}"
    top.mkdir(mode=0o755)
    try:
        victim = Victim.plant(top / "victim")
        env.vars["XDG_DATA_HOME"] = str(top / "data")
        (top / "data").mkdir()
        env.give(top)
        yield env, top, victim
    finally:
        remove_tree(top)  # the suite's own removal: layers are read-only on purpose


def _evil_release(env, victim: Victim, *, loud: bool, sibling: str) -> None:
    script = EVIL.format(
        loud=f'echo "$mark" > {victim.path}/secret || exit 7' if loud else "",
        victim=victim.path, store=env.store, sibling=sibling,
    )
    blob = tarball({"usr/bin/python3.11": script.encode(), "usr/lib/python3.11/mod.py": b"x = 1\n"})
    archive_release(env, "evil", "1.0", blob, links="    post: [{pycompile: python3.11}]\n")
    env.write_profile("evil", "command: [/usr/bin/python3.11]\ntools:\n  evil: \"1.0\"\n")


def _sibling_layer(env) -> str:
    """A layer already in the store (another release), whose file the step tries to change."""
    archive_release(env, "demo", "1.0", tarball({"usr/bin/demo": b"#!/bin/sh\necho demo\n"}))
    env.write_profile("demo", "command: [/usr/bin/demo]\ntools:\n  demo: \"1.0\"\n")
    result = env.envbox("build", "demo")
    assert result.returncode == 0, result.stderr
    (layer,) = os.listdir(env.store / "layers")
    return str(env.store / "layers" / layer / "usr" / "bin" / "demo")


def _no_pwned(tree: Path) -> None:
    for root, _, files in os.walk(tree):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p) and os.path.isfile(p):
                with open(p, "rb") as f:
                    assert b"PWNED" not in f.read(), f"{p} was written by the layer's program"


def test_post_step_program_cannot_write_outside_its_layer(world):
    env, top, victim = world
    sibling = _sibling_layer(env)
    _evil_release(env, victim, loud=False, sibling=sibling)
    result = env.envbox("build", "evil")
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    rows = json.loads(env.envbox("layers", "--json").stdout)
    layer = Path(next(r["path"] for r in rows if r["tool"] == "evil"))
    report = (layer / "usr" / "lib" / "python3.11" / "report").read_text().splitlines()
    assert (layer / "usr" / "lib" / "python3.11" / "written").read_text() == "ok\n", "the layer itself is writable"
    uid = int(report[0].split()[1])
    assert uid != 0 and (uid == env.uid if env.mode == "rootless" else uid == 65534), report
    assert [l for l in report[1:] if l.startswith("wrote")] == [], report
    assert "denied via-userns" in report and "no terminal" in report, report
    assert "net errno 101" in report, report  # ENETUNREACH: a network namespace of its own
    assert len([l for l in report if l.startswith("denied")]) == 7, report
    victim.check(env.store)
    assert not (victim.path / "via-userns").exists()
    _no_pwned(env.store)
    assert not os.path.exists("/usr/bin/evil")
    # What the step wrote is the builder's, like the rest of the layer.
    assert {p.lstat().st_uid for p in layer.rglob("*")} == {env.uid}


def test_a_failing_write_fails_the_build_and_says_so(world):
    env, top, victim = world
    _evil_release(env, victim, loud=True, sibling="/nonexistent")
    result = env.envbox("build", "evil")
    no_traceback(result)
    assert result.returncode == 125, result.stderr
    assert "pycompile python3.11 failed (exit 7)" in result.stderr, result.stderr
    assert "Read-only file system" in result.stderr, result.stderr
    victim.check(env.store)
    _no_pwned(env.store)
    assert not (env.store / "layers").exists() or os.listdir(env.store / "layers") == []
