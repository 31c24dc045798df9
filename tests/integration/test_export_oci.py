"""`envbox export NAME --oci OUT [--base BASE] [--kube]` for real: deterministic layers that
map to envbox's store digests, then the image loaded and run by Debian's podman (`podman
run`, `podman kube play` with the memory limit in force) and by crun on an unpacked bundle.

The base for the fast tests is a root filesystem tar made from the host's static busybox
(busybox-static: /bin/busybox and its applet links), enough for a shell and `head | tail`;
the network test builds a Debian base with `mmdebstrap --variant=essential`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import need, no_traceback
from podman_harness import Podman, podman_problem, wrap

APPLETS = ("sh", "cat", "ls", "head", "tail", "echo", "env", "readlink", "id", "sleep")


def busybox_rootfs(path: Path) -> Path:
    need(os.path.exists("/bin/busybox") and b"statically linked" in subprocess.run(["file", "-L", "/bin/busybox"], capture_output=True).stdout,
         "a static /bin/busybox (Debian's busybox-static; tests/run installs it)")
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc", "usr"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return path


def fake_python(env, name="pfx", says="python-fake") -> Path:
    prefix = env.base / name
    (prefix / "bin").mkdir(parents=True)
    script = prefix / "bin" / "python"
    script.write_text(f'#!/bin/sh\necho "{says} $*"\n')
    script.chmod(0o755)
    env.give(prefix)
    return prefix


def read_layout(out: Path) -> tuple[dict, dict, dict]:
    """(index, manifest, config) of an OCI archive or layout."""
    if out.is_dir():
        blob = lambda d: (out / "blobs" / "sha256" / d.split(":")[1]).read_bytes()
        index = json.loads((out / "index.json").read_bytes())
    else:
        tar = tarfile.open(out)
        blob = lambda d: tar.extractfile(f"blobs/sha256/{d.split(':')[1]}").read()
        index = json.loads(tar.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    return index, manifest, config, blob


def test_layers_are_deterministic_and_map_to_store_digests(env):
    prefix = fake_python(env)
    env.write_profile("app", f"command: [/usr/bin/python, hi]\nenv: {{GREETING: hello}}\nlimits: {{memory: 64M}}\n"
                      f"tools:\n  python: {{host: /usr/bin/python3.11}}\n  node: {{dir: {prefix}}}\n")
    env.write_profile("other", "command: [python]\ntools:\n  python: {host: /usr/bin/python3.11}\n")
    base = busybox_rootfs(env.base / "base.tar")
    env.give(base)
    first = env.envbox("export", "app", "--oci", str(env.base / "one.tar"), "--base", str(base))
    assert first.returncode == 0, first.stderr
    no_traceback(first)
    second = env.envbox("export", "app", "--oci", str(env.base / "two"), "--base", str(base))  # a layout directory
    assert second.returncode == 0, second.stderr
    other = env.envbox("export", "other", "--oci", str(env.base / "other.tar"))  # no base
    assert other.returncode == 0, other.stderr
    _, m1, c1, blob1 = read_layout(env.base / "one.tar")
    _, m2, _, _ = read_layout(env.base / "two")
    _, m3, _, _ = read_layout(env.base / "other.tar")
    assert [l["digest"] for l in m1["layers"]] == [l["digest"] for l in m2["layers"]]
    assert len(m1["layers"]) == 3  # the base's one, then python, then node
    python_layer, node_layer = m1["layers"][1], m1["layers"][2]
    assert m3["layers"][0]["digest"] == python_layer["digest"], "the same release gives the same layer digest"
    notes = python_layer["annotations"]
    assert notes["org.envbox.tool"] == "python" and "host link" in notes["org.envbox.source"]
    store = env.store / "layers"
    assert (store / notes["org.envbox.store-digest"]).is_dir(), "the annotation names the layer in envbox's store"
    assert node_layer["annotations"]["org.envbox.store-digest"] == f"dir:{prefix}"
    rows = json.loads(m1["annotations"]["org.envbox.layers"])
    assert [r["oci_digest"] for r in rows] == [python_layer["digest"], node_layer["digest"]]
    # Each layer blob is a tar hashing to its digest, with fixed owners and times, sorted.
    data = blob1(node_layer["digest"])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == node_layer["digest"]
    members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    assert [m.name for m in members] == ["usr", "usr/bin", "usr/bin/python"]
    assert {(m.uid, m.gid, m.mtime, m.uname) for m in members} == {(0, 0, 0, "")}
    assert c1["config"]["Entrypoint"] == ["/usr/bin/python", "hi"]
    env_vars = dict(e.split("=", 1) for e in c1["config"]["Env"])
    assert env_vars["GREETING"] == "hello" and env_vars["ENVBOX_PROFILE"] == "app"
    assert c1["rootfs"]["diff_ids"][1:] == [python_layer["digest"], node_layer["digest"]]
    assert json.loads(c1["config"]["Labels"]["org.envbox.limits"]) == {"memory": 64 * 1024 * 1024}
    # An OCI layout (here: the image just written) as the base: its layers come first, unchanged.
    stacked = env.envbox("export", "other", "--oci", str(env.base / "stacked"), "--base", str(env.base / "two"))
    assert stacked.returncode == 0, stacked.stderr
    _, m4, c4, _ = read_layout(env.base / "stacked")
    assert [l["digest"] for l in m4["layers"]] == [l["digest"] for l in m2["layers"]] + [python_layer["digest"]]
    assert m4["annotations"]["org.opencontainers.image.base.digest"] == read_layout(env.base / "two")[0]["manifests"][0]["digest"]
    assert c4["config"]["Entrypoint"] == ["python"]


def test_refusals_leave_nothing_behind(env):
    env.write_profile("app", "command: [sh]\n")
    out = env.base / "img.tar"
    out.write_text("mine")
    env.give(out)
    exists = env.envbox("export", "app", "--oci", str(out))
    assert exists.returncode == 125 and "already exists" in exists.stderr.splitlines()[0]
    assert out.read_text() == "mine"
    for base in (env.base / "nope.tar", env.home):
        bad = env.envbox("export", "app", "--oci", str(env.base / "new.tar"), "--base", str(base))
        assert bad.returncode == 125, bad.stderr
        no_traceback(bad)
        assert len(bad.stderr.splitlines()) == 2
    usage = env.envbox("export", "app")
    assert usage.returncode == 2
    assert sorted(p.name for p in env.base.iterdir() if p.name.startswith((".new", "new"))) == []


@pytest.fixture
def podman(root_env):
    problem = podman_problem()
    need(problem is None, problem or "")
    (root_env.base / "podman").mkdir()
    p = Podman(root_env.base / "podman")
    yield p
    p.reset()


def _export(env, name, base) -> tuple[Path, str]:
    out = env.base / f"{name}.tar"
    result = env.envbox("export", name, "--oci", str(out), "--base", str(base), "--kube")
    assert result.returncode == 0, result.stderr
    index, _, _, _ = read_layout(out)
    return out, index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]


def test_podman_runs_the_image(root_env, podman):
    prefix = fake_python(root_env)
    root_env.write_profile("fakepy", f"command: [/usr/bin/python, hi]\nenv: {{GREETING: hello}}\ntools:\n  python: {{dir: {prefix}}}\n")
    out, ref = _export(root_env, "fakepy", busybox_rootfs(root_env.base / "base.tar"))
    loaded = podman.run(f"load -i {out}")
    assert loaded.returncode == 0, loaded.stderr
    assert ref in loaded.stdout + loaded.stderr
    ran = podman.run(f"run --rm --network=none {ref} there")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "python-fake hi there"
    shell = podman.run(f"run --rm --network=none --entrypoint /bin/sh {ref} -c 'echo $GREETING $ENVBOX_PROFILE'")
    assert shell.stdout.strip() == "hello fakepy", shell.stderr
    # A docker-archive (podman save) as the base of another export.
    saved = root_env.base / "saved.tar"
    assert podman.run(f"save --format docker-archive -o {saved} {ref}").returncode == 0
    root_env.write_profile("ontop", "command: [/usr/bin/python, 'on', top]\n")
    out2, ref2 = _export(root_env, "ontop", saved)
    assert podman.run(f"load -i {out2}").returncode == 0
    ran2 = podman.run(f"run --rm --network=none {ref2}")
    assert ran2.stdout.strip() == "python-fake on top", ran2.stderr


def test_kube_play_holds_the_memory_limit(root_env, podman):
    # tail keeps every "line" of a newline-free stream: 200 MB against a 64 MB cap.
    root_env.write_profile("hog", "command: [sh, -c, 'head -c 200m /dev/zero | tail >/dev/null; echo survived $?']\nlimits: {memory: 64M, cpu: 0.5}\n")
    out, ref = _export(root_env, "hog", busybox_rootfs(root_env.base / "base.tar"))
    pod = Path(f"{out}.pod.yaml")
    text = pod.read_text()
    assert "memory: 64Mi" in text and "cpu: 500m" in text and ref in text
    assert podman.run(f"load -i {out}").returncode == 0
    played = podman.run(f"kube play {pod}")
    assert played.returncode == 0, played.stderr
    container = "envbox-hog-envbox-hog"
    waited = podman.run(f"wait {container}")
    assert waited.returncode == 0, waited.stderr
    memory = podman.run(f"inspect {container} --format '{{{{.HostConfig.Memory}}}} {{{{.HostConfig.CpuQuota}}}} {{{{.HostConfig.CpuPeriod}}}}'")
    assert memory.stdout.split() == [str(64 << 20), "50000", "100000"], memory.stderr  # 0.5 cores
    logs = podman.run(f"logs {container}")
    assert "survived 137" in logs.stdout + logs.stderr, logs  # tail was OOM-killed (128+SIGKILL)
    podman.run(f"kube down {pod}")


def test_crun_runs_the_unpacked_image(root_env):
    need(shutil.which("crun") is not None, "crun is not installed (tests/run installs it)")
    prefix = fake_python(root_env)
    root_env.write_profile("fakepy", f"command: [/usr/bin/python, from-crun]\ntools:\n  python: {{dir: {prefix}}}\n")
    out, _ = _export(root_env, "fakepy", busybox_rootfs(root_env.base / "base.tar"))
    _, manifest, config, blob = read_layout(out)
    bundle = root_env.base / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in manifest["layers"]:  # no whiteouts in these layers: extracting in order is applying
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as tar:
            tar.extractall(rootfs)
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=config["config"]["Entrypoint"], env=config["config"]["Env"])
    (bundle / "config.json").write_text(json.dumps(spec))
    ran = subprocess.run(wrap(f"crun run --bundle {bundle} envbox-test-{os.getpid()}"), capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "python-fake from-crun"


def debian_base() -> Path:
    """A Debian 12 base from Debian's packages (mmdebstrap --variant=essential, ~30 s, kept
    for later runs beside the shared download cache), with libstdc++6, which upstream node
    builds link to, and libexpat1, which the python layer takes from the host (deb layers
    hold only what the host lacks: the base must be the host's distribution with those)."""
    need(shutil.which("mmdebstrap") is not None, "mmdebstrap is not installed (tests/run installs it)")
    path = Path("/tmp/envbox-test-downloads-root/bookworm-essential-node-python.tar")
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run(["mmdebstrap", "--variant=essential", "--include=libstdc++6,libexpat1", "--format=tar", "--quiet", "bookworm", str(tmp)], check=True, timeout=600)
        os.replace(tmp, path)
    return path


@pytest.mark.network
@pytest.mark.slow
def test_podman_shows_the_pinned_python_and_node(root_env, podman):
    from conftest import shared_cache

    shared_cache(root_env)
    root_env.write_profile("pinned", "command: [sh, -c, '/usr/bin/python --version 2>&1; /usr/bin/node --version']\n"
                           "tools:\n  python: \"3.9\"\n  node: \"12\"\n")
    out, ref = _export(root_env, "pinned", debian_base())
    _, manifest, _, _ = read_layout(out)
    releases = [l["annotations"]["org.envbox.release"] for l in manifest["layers"][1:]]
    assert [r.split()[:2] for r in releases] == [["python", "3.9.2"], ["node", "12.22.12"]], releases
    assert podman.run(f"load -i {out}").returncode == 0
    ran = podman.run(f"run --rm --network=none {ref}")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["Python", "3.9.2", "v12.22.12"]
