"""The deb source and the post-build steps: offline against a local repository, and for real
against Debian's archive (network) for every shipped python release."""

from __future__ import annotations

import functools
import hashlib
import http.server
import marshal
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from envbox.store import postbuild
from envbox.sources import privatize
from envbox.core.errors import BuildError
from envbox.sources import BuildContext, deb

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG = REPO_ROOT / "envbox" / "releases" / "python.yaml"
HELPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip() if shutil.which("dpkg") else ""

needs_debian = pytest.mark.skipif(not (ARCH and shutil.which("dpkg-deb") and shutil.which("apt-get")), reason="needs dpkg-deb and apt-get")


# ---- fixtures: .deb files built with dpkg-deb, a repository served on 127.0.0.1 --------------


def make_deb(where: Path, name: str, version: str, *, files: dict, control: str = "", scripts: dict | None = None, out: str | None = None) -> Path:
    """A real .deb: files maps a path to text (or ("link", target)); scripts are maintainer scripts."""
    tree = where / f"tree-{name}-{version}"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "DEBIAN").mkdir(parents=True)
    arch = "all" if not any(p.startswith(("bin/", "lib/", "usr/lib/")) for p in files) else ARCH
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <test@example.org>\n{control}Description: fixture {name}\n"
    )
    for rel, content in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):
            os.symlink(content[1], path)
        else:
            path.write_text(content)
            path.chmod(0o755 if "/bin/" in f"/{rel}" else 0o644)
    for script, text in (scripts or {}).items():
        (tree / "DEBIAN" / script).write_text(text)
        (tree / "DEBIAN" / script).chmod(0o755)
    target = where / (out or f"{name}_{version}_{arch}.deb")
    # --nocheck: lets a fixture carry names dpkg-deb would refuse; the output path is absolute.
    subprocess.run(["dpkg-deb", "--root-owner-group", "--nocheck", "--build", str(tree), str(target.absolute())], check=True, capture_output=True)
    return target


class Repo:
    """A Debian repository (dists/SUITE/main/binary-ARCH/Packages + Release) in a directory."""

    def __init__(self, root: Path, suite: str = "test"):
        self.root, self.suite, self.stanzas = root, suite, []
        (root / "debian" / "pool").mkdir(parents=True)

    def add(self, deb_file: Path, *, filename: str | None = None, sha256: str | None = None) -> str:
        filename = filename or f"pool/main/{deb_file.name}"
        dest = self.root / "debian" / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(deb_file, dest)
        fields = subprocess.run(["dpkg-deb", "--field", "--", str(dest.absolute())], check=True, capture_output=True, text=True).stdout
        data = dest.read_bytes()
        digest = sha256 or hashlib.sha256(data).hexdigest()
        self.stanzas.append(f"{fields.rstrip()}\nFilename: {filename}\nSize: {len(data)}\nSHA256: {digest}\n")
        return digest

    def publish(self) -> None:
        dist = self.root / "debian" / "dists" / self.suite
        packages = dist / "main" / f"binary-{ARCH}" / "Packages"
        packages.parent.mkdir(parents=True, exist_ok=True)
        packages.write_text("\n".join(self.stanzas))
        data = packages.read_bytes()
        (dist / "Release").write_text(
            f"Suite: {self.suite}\nCodename: {self.suite}\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
            f"Architectures: {ARCH}\nComponents: main\nSHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-{ARCH}/Packages\n"
        )


class Server:
    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/debian"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        return None


STATUS = """\
Package: hostlib
Status: install ok installed
Version: 1.5-1
Architecture: all

Package: oldhost
Status: install ok installed
Version: 0.9
Architecture: all
"""


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A repository with hello (+ maintainer scripts), its dependencies, and a deb named -dashdep."""
    from envbox.sources import fetch

    monkeypatch.setenv(fetch.LOOPBACK_SWITCH, "1")  # envbox.fetch allows http to 127.0.0.1 only so
    debs = tmp_path / "debs"
    debs.mkdir()
    marker = tmp_path / "maintainer-script-ran"
    repo = Repo(tmp_path / "mirror")
    hello = make_deb(
        debs,
        "hello",
        "1.0",
        control="Depends: libdep (>= 2), hostlib (>= 1.0) | nothing-here, dashdep\nPre-Depends: hostlib\n",
        files={
            "bin/hello": "#!/bin/sh\necho hello from the layer\n",
            "lib/x86_64-linux-gnu/libhello.so.1": "not really a library\n",
            "usr/lib/x86_64-linux-gnu/libother.so.1": "neither\n",
            "usr/share/doc/hello/copyright": "fixture\n",
            "usr/share/man/man1/hello.1": "fixture\n",
        },
        scripts={name: f"#!/bin/sh\ntouch {marker}\n" for name in ("preinst", "postinst", "prerm", "postrm")},
    )
    repo.add(hello)
    repo.add(make_deb(debs, "libdep", "1.0", files={"usr/share/libdep/v1": "1\n"}))
    repo.add(make_deb(debs, "libdep", "2.1", files={"usr/share/libdep/v2": "2\n"}))
    # The file name starts with '-': it must reach dpkg-deb as a path, never as an option.
    repo.add(make_deb(debs, "dashdep", "1.0", files={"usr/share/dashdep/ok": "ok\n"}, out="-dashdep_1.0_all.deb"), filename="pool/main/-dashdep_1.0_all.deb")
    repo.add(make_deb(debs, "broken", "1.0", control="Depends: libdep (>= 3)\n", files={"usr/share/broken": "x\n"}))
    repo.add(make_deb(debs, "clash", "1.0", files={"bin/hello": "#!/bin/sh\necho other\n", "usr/bin/hello": "#!/bin/sh\necho clash\n"}))
    repo.publish()
    server = Server(repo.root)
    status = tmp_path / "status"
    status.write_text(STATUS)
    yield {"tmp": tmp_path, "repo": repo, "server": server, "marker": marker, "status": status, "debs": debs, "downloads": tmp_path / "downloads"}
    server.stop()


def context(world, name: str, **kw) -> BuildContext:
    base = world["tmp"] / name
    (base / "root").mkdir(parents=True)
    (base / "work").mkdir()
    lines: list[str] = []
    return BuildContext(root=base / "root", work=base / "work", downloads=world["downloads"], helper_env=HELPER_ENV, progress=lines.append, **kw)


def mirror(world) -> deb.Mirror:
    return deb.Mirror(archive=world["server"].url, security=None, keyring=None, updates=False)


def build(world, spec: dict, name: str = "layer", **kw) -> tuple[BuildContext, tuple]:
    ctx = context(world, name, **kw)
    artifacts = deb.build_from({"kind": "deb", "suite": "test", **spec}, ctx, mirror=mirror(world), status=world["status"])
    return ctx, artifacts


# ---- spec validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"kind": "deb", "packages": ["python3.13"]}, "suite must be"),
        ({"kind": "deb", "suite": "trixie main", "packages": ["python3.13"]}, "suite must be"),
        ({"kind": "deb", "suite": "trixie", "packages": []}, "packages must be a non-empty list"),
        ({"kind": "deb", "suite": "trixie", "packages": ["-o"]}, "'-o' is not a Debian package name"),
        ({"kind": "deb", "suite": "trixie", "packages": ["--download-only"]}, "is not a Debian package name"),
        ({"kind": "deb", "suite": "trixie", "packages": ["python3.13"], "skip": "python3"}, "skip must be a list"),
        ({"kind": "deb", "suite": "trixie", "packages": ["python3.13"], "pakages": []}, "did you mean 'packages'"),
        ({"kind": "deb", "suite": "trixie", "packages": ["python3.13"], "private": "../x"}, "private must be a tag"),
        ({"kind": "deb", "suite": "trixie", "packages": ["python3.13"], "strip": "yes"}, "strip must be true or false"),
    ],
)
def test_check_rejects(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        deb.check(spec)


def test_shipped_catalog_entries_pass_check():
    data = yaml.safe_load(CATALOG.read_text())
    assert data["tool"] == "python"
    versions = [r["version"] for r in data["releases"]]
    assert versions == ["2.7.18", "3.9.2", "3.11.2", "3.13.5", "3.14.10"]
    for release in data["releases"]:
        deb.check(release["source"])
        postbuild.check_steps(release["post"])
        assert release["links"]["usr/bin/python"].startswith("python"), release["version"]
        # /usr/bin/python3 only through the `python3` part (default for 3.x), so a profile can
        # keep the host's (`without: [python3]`); never for 2.7.
        assert "usr/bin/python3" not in release["links"]
        python3 = release.get("parts", {}).get("python3")
        assert (python3 is None) == release["version"].startswith("2.")


def test_shipped_catalog_loads_through_the_catalog_loader():
    from envbox.core import catalog

    from envbox.sources import checks

    releases = catalog._read_file(CATALOG, checks())
    assert [(r.tool, r.version, r.kind) for r in releases] == [("python", v, "deb") for v in ("2.7.18", "3.9.2", "3.11.2", "3.13.5", "3.14.10")]


def test_sources_list_per_suite():
    assert deb.DEBIAN.sources_list("bullseye").splitlines() == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://deb.debian.org/debian bullseye main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://deb.debian.org/debian bullseye-updates main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://deb.debian.org/debian-security bullseye-security main",
    ]
    assert deb.DEBIAN.sources_list("sid").splitlines() == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://deb.debian.org/debian sid main"
    ]
    assert len(deb.DEBIAN.sources_list("bookworm-backports").splitlines()) == 1


@pytest.mark.parametrize(
    "uri,name",
    [
        ("http://deb.debian.org/debian-security/dists/bullseye-security/main/binary-amd64/Packages", "deb.debian.org_debian-security_dists_bullseye-security_main_binary-amd64_Packages"),
        ("http://127.0.0.1:8080/debian/dists/test/main/binary-amd64/Packages", "127.0.0.1:8080_debian_dists_test_main_binary-amd64_Packages"),
        ("https://user:secret@example.org/de_b~x/dists/t/main/binary-arm64/Packages", "example.org_de%5fb%7ex_dists_t_main_binary-arm64_Packages"),
        ("https://deb.debian.org/debian/dists/trixie/main/binary-amd64/Packages", "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages"),
    ],
)
def test_apt_list_name(uri, name):
    assert deb.apt_list_name(uri) == name


@needs_debian
def test_apt_config_shuts_out_the_host_configuration(tmp_path):
    conf = tmp_path / "apt.conf"
    conf.write_text(deb.apt_config(tmp_path, ARCH))
    dump = subprocess.run(["apt-config", "dump"], env={**HELPER_ENV, "APT_CONFIG": str(conf)}, capture_output=True, text=True, check=True).stdout
    assert f'Dir::State::status "{tmp_path}/state/status";' in dump
    assert 'Dir::Etc::sourceparts "/dev/null";' in dump
    assert 'Dir::Etc::preferencesparts "/dev/null";' in dump
    # Nothing from /etc/apt/apt.conf.d (hooks such as APT::Update::Post-Invoke) is read.
    assert "Post-Invoke" not in dump
    assert "/var/lib/dpkg" not in dump and "/var/lib/apt" not in dump


# ---- building from a local repository (offline) ---------------------------------------------


@needs_debian
def test_build_unpacks_the_closure_without_running_scripts(world):
    ctx, artifacts = build(world, {"packages": ["hello"]})
    root = ctx.root
    # hostlib is satisfied by the host status; libdep at its newest version; dashdep despite its file name.
    assert sorted(a.name for a in artifacts) == sorted([f"hello_1.0_{ARCH}.deb", "libdep_2.1_all.deb", "-dashdep_1.0_all.deb"])
    assert (root / "usr/share/libdep/v2").is_file() and not (root / "usr/share/libdep/v1").exists()
    assert (root / "usr/share/dashdep/ok").is_file()
    # Maintainer scripts never ran; the control area is not in the layer.
    assert not world["marker"].exists()
    assert not (root / "DEBIAN").exists()
    # usrmerge: /bin and /lib moved into usr/, merged with what usr/lib already had.
    assert sorted(p.name for p in root.iterdir()) == ["usr"]
    assert (root / "usr/bin/hello").read_text() == "#!/bin/sh\necho hello from the layer\n"
    assert os.access(root / "usr/bin/hello", os.X_OK)
    assert sorted(p.name for p in (root / "usr/lib/x86_64-linux-gnu").iterdir()) == ["libhello.so.1", "libother.so.1"]
    # strip (the default): no docs, man pages.
    assert not (root / "usr/share/doc").exists() and not (root / "usr/share/man").exists()
    # Every artifact is in the cache under its sha256, with those bytes.
    for artifact in artifacts:
        cached = world["downloads"] / "sha256" / artifact.sha256
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == artifact.sha256
        assert artifact.size == cached.stat().st_size
        assert artifact.url.startswith(world["server"].url + "/pool/main/")


@needs_debian
def test_strip_false_keeps_docs(world):
    ctx, _ = build(world, {"packages": ["hello"], "strip": False})
    assert (ctx.root / "usr/share/doc/hello/copyright").is_file()
    assert (ctx.root / "usr/share/man/man1/hello.1").is_file()


@needs_debian
def test_force_takes_a_package_the_host_has(world):
    world["repo"].add(make_deb(world["debs"], "hostlib", "2.0", files={"usr/share/hostlib/v2": "2\n"}))
    world["repo"].publish()
    ctx, artifacts = build(world, {"packages": ["hello"], "force": ["hostlib"]})
    assert "hostlib_2.0_all.deb" in [a.name for a in artifacts]
    assert (ctx.root / "usr/share/hostlib/v2").is_file()


@needs_debian
def test_a_lock_pin_that_differs_is_an_error(world):
    with pytest.raises(BuildError) as info:
        build(world, {"packages": ["hello"]}, pins={"libdep_2.1_all.deb": "0" * 64})
    assert "libdep_2.1_all.deb: the lock pins sha256 0000000000000000" in info.value.message
    assert info.value.hint


@needs_debian
def test_a_lock_pin_that_matches_builds(world):
    _, first = build(world, {"packages": ["hello"]}, name="first")
    pins = {a.name: a.sha256 for a in first}
    _, second = build(world, {"packages": ["hello"]}, name="second", pins=pins)
    assert second == first


@needs_debian
def test_bytes_that_differ_from_the_index_are_refused(world):
    # The index lists one sha256, the server sends other bytes: the download is refused.
    bad = make_deb(world["debs"], "tampered", "1.0", files={"usr/share/tampered": "x\n"})
    world["repo"].add(bad, sha256="ab" * 32)
    world["repo"].publish()
    with pytest.raises(BuildError, match="expected abababababababab"):
        build(world, {"packages": ["tampered"]})
    assert not (world["downloads"] / "sha256" / ("ab" * 32)).exists()


@needs_debian
def test_second_build_needs_no_network_and_repairs_a_damaged_cache_entry(world):
    _, artifacts = build(world, {"packages": ["hello"]}, name="first")
    world["server"].stop()
    # Lists younger than LISTS_MAX_AGE and cached .debs: nothing is fetched.
    ctx, again = build(world, {"packages": ["hello"]}, name="offline")
    assert again == artifacts
    assert (ctx.root / "usr/bin/hello").is_file()
    # A damaged cache entry is detected (and, with the server gone, cannot be fetched again).
    (world["downloads"] / "sha256" / artifacts[0].sha256).write_bytes(b"garbage")
    with pytest.raises(BuildError, match="download of http://127.0.0.1:.* failed"):
        build(world, {"packages": ["hello"]}, name="damaged")


@needs_debian
def test_unsatisfiable_dependency_is_an_error(world):
    with pytest.raises(BuildError, match=r"broken 1.0 depends on libdep \(>= 3\), which neither the host nor test can satisfy"):
        build(world, {"packages": ["broken"]})


@needs_debian
def test_a_file_shipped_in_bin_and_usr_bin_is_an_error(world):
    with pytest.raises(BuildError, match="/bin/hello and /usr/bin/hello are both shipped"):
        build(world, {"packages": ["clash"]})


@needs_debian
def test_unreachable_mirror_is_an_error(world, tmp_path):
    world["server"].stop()
    with pytest.raises(BuildError, match="apt-get update for test failed") as info:
        build(world, {"packages": ["hello"]})
    assert "reachable" in info.value.hint


# ---- damaged .deb files ----------------------------------------------------------------------


def ar_members(data: bytes) -> list[tuple[str, bytes]]:
    """The members of an ar archive (ar(5): 8-byte magic, then 60-byte headers, 2-byte aligned)."""
    assert data[:8] == b"!<arch>\n"
    members, pos = [], 8
    while pos < len(data):
        header = data[pos : pos + 60]
        size = int(header[48:58])
        members.append((header[:16].decode().strip(), data[pos + 60 : pos + 60 + size]))
        pos += 60 + size + (size & 1)
    return members


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, body in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode() + body + b"\n" * (len(body) & 1)
    return out


def damaged(good: bytes, how: str) -> bytes:
    if how == "unknown compression":
        members = ar_members(good)
        assert [name for name, _ in members] == ["debian-binary", "control.tar.xz", "data.tar.xz"]  # dpkg-deb's default
        return ar_archive([(name.replace("data.tar.xz", "data.tar.zz"), body) for name, body in members])
    if how == "bad member header":
        return good[:8] + b"debian-binary   this is no ar member header at all!!!!!!!!!!!" + good[68:]
    if how == "truncated":
        return good[:100]
    return b"hello, this is not an ar archive\n"


@needs_debian
@pytest.mark.parametrize(
    "how,reason",
    [
        ("unknown compression", "archive 'x_1.0_all.deb' uses unknown compression for member 'data.tar.zz', giving up"),
        ("bad member header", "file 'x_1.0_all.deb' is corrupt - bad archive header magic"),
        ("truncated", "unexpected end of file in archive member header in x_1.0_all.deb"),
        ("not ar", "'x_1.0_all.deb' is not a Debian format archive"),
    ],
)
def test_a_damaged_deb_is_a_clear_error(tmp_path, how, reason):
    good = make_deb(tmp_path, "x", "1.0", files={"usr/share/x/f": "x\n"})
    bad = tmp_path / "cache-entry"
    bad.write_bytes(damaged(good.read_bytes(), how))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(BuildError) as info:
        deb.extract(bad, root, HELPER_ENV, name="x_1.0_all.deb")
    assert info.value.message == f"dpkg-deb cannot unpack x_1.0_all.deb: {reason}"
    assert "dpkg-deb --info" in info.value.hint
    assert list(root.iterdir()) == []


@needs_debian
def test_unknown_compression_in_the_archive_fails_the_build(world):
    odd = make_deb(world["debs"], "odd", "1.0", files={"usr/share/odd/f": "x\n"})
    odd.write_bytes(damaged(odd.read_bytes(), "unknown compression"))
    world["repo"].add(odd)  # the index lists the odd file's own sha256: the download succeeds
    world["repo"].publish()
    with pytest.raises(BuildError, match=r"dpkg-deb cannot unpack odd_1.0_all.deb: archive 'odd_1.0_all.deb' uses unknown compression"):
        build(world, {"packages": ["odd"]})


# ---- as root and as the unprivileged test user ------------------------------------------------

BUILD_AS_USER = """
import json, sys
from pathlib import Path
from envbox.store import postbuild
from envbox.sources import BuildContext, deb
a = json.loads(sys.argv[1])
base = Path(a["base"])
(base / "root").mkdir()
(base / "work").mkdir()
ctx = BuildContext(root=base / "root", work=base / "work", downloads=base / "downloads", helper_env=a["env"], progress=print)
mirror = deb.Mirror(archive=a["url"], security=None, keyring=None, updates=False)
artifacts = deb.build_from({"kind": "deb", "suite": "test", "packages": ["hello"]}, ctx, mirror=mirror, status=base / "status")
ran = postbuild.run_over_usr(ctx.root, ["/bin/sh", "-c", "id -u; /usr/bin/hello; test -x /usr/bin/python3 && echo host-usr-below"], a["env"])
print(json.dumps({"artifacts": sorted(x.name for x in artifacts), "rc": ran.returncode, "out": ran.stdout, "err": ran.stderr}))
"""


@needs_debian
def test_build_and_run_in_the_layer_as_root_and_rootless(world, env):
    """apt-get update, download, unpack and the sandboxed run work for the unprivileged user too."""
    import json
    import sys

    from envbox.sources import fetch

    shutil.copy(world["status"], env.base / "status")
    env.give(env.base)
    python = str(Path(os.environ["ENVBOX_TEST_PREFIX"]) / "bin" / "python") if env.uid else sys.executable
    args = {"base": str(env.base), "url": world["server"].url, "env": HELPER_ENV}
    result = env.cmd([python, "-c", BUILD_AS_USER, json.dumps(args)], env={fetch.LOOPBACK_SWITCH: "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["artifacts"] == sorted([f"hello_1.0_{ARCH}.deb", "libdep_2.1_all.deb", "-dashdep_1.0_all.deb"])
    assert report["rc"] == 0, report["err"]
    # A layer's program never runs as root at build time: as root it runs as nobody.
    assert report["out"].splitlines() == [str(env.uid or postbuild.build_uid()[0]), "hello from the layer", "host-usr-below"]
    # Everything the build wrote belongs to the user and sits under its own directories.
    owners = {p.stat().st_uid for p in (env.base / "downloads").rglob("*")}
    assert owners == {env.uid}


# ---- post-build steps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps,message",
    [
        ("pycompile", "post must be a list"),
        ([{"pycompile": "python3.13", "other": 1}], "one-key mapping"),
        ([{"compile": "python3.13"}], "unknown post step 'compile'"),
        ([{"pycompile": "python"}], "interpreter name"),
        ([{"pycompile": "../../bin/sh"}], "interpreter name"),
    ],
)
def test_check_steps_rejects(steps, message):
    with pytest.raises(ValueError, match=message):
        postbuild.check_steps(steps)


def test_elf_info_on_host_binaries():
    import sys

    exe = privatize.elf_info(Path(os.path.realpath(sys.executable)))
    assert exe is not None and exe.interpreter.endswith(".so.2") and exe.needed >= 1
    assert privatize.elf_info(Path("/bin/sh")).interpreter
    libc = next(Path(p) for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/aarch64-linux-gnu/libc.so.6") if Path(p).exists())
    assert privatize.elf_info(libc.parent / "libm.so.6").interpreter == ""
    assert privatize.elf_info(Path(__file__)) is None


needs_overlay = pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare")


@needs_overlay
def test_run_over_usr_stacks_the_layer_over_the_host_usr(tmp_path):
    layer = tmp_path / "layer"
    (layer / "usr" / "bin").mkdir(parents=True)
    (layer / "usr" / "bin" / "envbox-test-hello").write_text("#!/bin/sh\necho layer says hi\n")
    (layer / "usr" / "bin" / "envbox-test-hello").chmod(0o755)
    result = postbuild.run_over_usr(layer, ["/bin/sh", "-c", "/usr/bin/envbox-test-hello && test -x /usr/bin/python3 && touch /usr/x"], HELPER_ENV)
    assert result.stdout == "layer says hi\n"
    # The host's /usr is still underneath, and the overlay is read-only.
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert not Path("/usr/bin/envbox-test-hello").exists()


@needs_overlay
def test_pycompile_writes_unchecked_hash_pycs_naming_usr_paths(tmp_path):
    """pycompile with the layer's own interpreter (here a copy of the host's python3.11)."""
    host_python = Path("/usr/bin/python3.11")
    if not host_python.exists():
        pytest.skip("no /usr/bin/python3.11 to stand in for a layer's interpreter")
    layer = tmp_path / "layer"
    (layer / "usr" / "bin").mkdir(parents=True)
    shutil.copy2(host_python, layer / "usr" / "bin" / "python3.11")
    stdlib = layer / "usr" / "lib" / "python3.11" / "envboxdemo"
    stdlib.mkdir(parents=True)
    (stdlib / "__init__.py").write_text("def where():\n    raise RuntimeError('x')\n")
    postbuild.pycompile(layer, "python3.11", env=HELPER_ENV)
    pyc = stdlib / "__pycache__" / "__init__.cpython-311.pyc"
    data = pyc.read_bytes()
    assert int.from_bytes(data[4:8], "little") == 0b01  # PEP 552: hash-based, unchecked
    code = marshal.loads(data[16:])
    assert code.co_filename == "/usr/lib/python3.11/envboxdemo/__init__.py"


def test_pycompile_without_the_interpreter_is_an_error(tmp_path):
    (tmp_path / "usr" / "lib" / "python3.13").mkdir(parents=True)
    with pytest.raises(BuildError, match="no usr/bin/python3.13"):
        postbuild.pycompile(tmp_path, "python3.13", env=HELPER_ENV)


# ---- the shipped python releases, for real (network) -----------------------------------------

RELEASES = yaml.safe_load(CATALOG.read_text())["releases"]


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """One download cache for the module (apt lists and .debs are reused across releases)."""
    shared = os.environ.get("ENVBOX_TEST_DOWNLOADS")
    return Path(shared) if shared else tmp_path_factory.mktemp("downloads")


def build_release(release: dict, base: Path, downloads: Path) -> Path:
    root, work = base / "root", base / "work"
    root.mkdir(parents=True)
    work.mkdir()
    ctx = BuildContext(root=root, work=work, downloads=downloads, helper_env=HELPER_ENV)
    deb.build(release["source"], ctx)
    postbuild.run_steps(release.get("post", []), root, ctx)
    for rel, target in release.get("links", {}).items():  # as the store does after a build
        (root / rel).unlink(missing_ok=True)
        os.symlink(target, root / rel)
    return root


@needs_debian
@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES, ids=[r["version"] for r in RELEASES])
def test_python_release_builds_and_runs(release, tmp_path, downloads):
    root = build_release(release, tmp_path, downloads)
    version = release["version"]
    short = ".".join(version.split(".")[:2])
    assert not os.path.lexists(root / "usr/bin/python3"), "a layer must never provide /usr/bin/python3"
    assert os.readlink(root / "usr/bin/python") == f"python{short}"
    assert not (root / "usr/share/doc").exists()
    result = postbuild.run_over_usr(root, ["/usr/bin/python", "-c", "import sys, ssl, json, sqlite3; print(sys.version)"], HELPER_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(version + " "), result.stdout
    # The stdlib was byte-compiled at build time and the pyc files are used as they are.
    verbose = postbuild.run_over_usr(root, ["/usr/bin/python", "-v", "-c", "import json"], HELPER_ENV)
    if short == "2.7":
        assert "import json # precompiled from /usr/lib/python2.7/json/__init__.pyc" in verbose.stderr
    else:
        tag = short.replace(".", "")
        assert f"# code object from '/usr/lib/python{short}/json/__pycache__/__init__.cpython-{tag}.pyc'" in verbose.stderr


@needs_debian
@pytest.mark.network
@pytest.mark.slow
def test_private_python313_leaves_host_programs_alone(tmp_path, downloads):
    release = next(r for r in RELEASES if r["version"].startswith("3.13"))
    root = build_release(release, tmp_path, downloads)
    tag = release["source"]["private"]
    interp = privatize.elf_info(root / "usr/bin/python3.13")
    assert interp.interpreter == f"/usr/lib/envbox/{tag}/ld-linux-x86-64.so.2"
    assert interp.rpath and not interp.runpath
    # Nothing of trixie's libc or OpenSSL is left where host programs look for libraries.
    assert not (root / "usr/lib/x86_64-linux-gnu").exists() and not (root / "usr/lib64").exists()
    assert (root / f"usr/lib/envbox/{tag}/libssl.so.3").is_file()
    script = (
        "/usr/bin/python -c 'import ssl; print(ssl.OPENSSL_VERSION)'"
        " && ssh -V 2>&1"
        " && /bin/sh -c true"
        " && apt-get --version | head -n 1"
    )
    result = postbuild.run_over_usr(root, ["/bin/sh", "-c", script], HELPER_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    python_ssl, ssh, apt = result.stdout.splitlines()
    assert python_ssl.startswith("OpenSSL 3.5")
    host_ssl = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    assert ssh == host_ssl  # ssh still runs on the host's OpenSSL
    assert apt.startswith("apt ")
