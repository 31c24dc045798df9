"""Review class 7: over-long names in archives. A member whose path exceeds PATH_MAX or whose
last component exceeds NAME_MAX, and any other failure to write a member, is reported in one
line naming the archive and the member, never as a raw "[Errno 36]" naming a store temp path.
Real tar, zip, deb and wheel archives, made here."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import no_traceback

LONG_LEAF = "usr/share/x/" + "n" * 300  # last component over NAME_MAX (255)
LONG_PATH = "usr/" + "/".join(["d" * 200] * 22) + "/f"  # 4.4 KB: over PATH_MAX, every part short
LONG_DIR = "usr/" + "m" * 256 + "/f"  # a directory component over NAME_MAX


def tar_bytes(members: dict[str, bytes], fmt=tarfile.PAX_FORMAT, mode="w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def one_line_naming(result, archive: str, member: str):
    assert result.returncode == 125, (result.returncode, result.stderr)
    no_traceback(result)
    lines = result.stderr.splitlines()
    first = [l for l in lines if l.startswith("envbox: ") and not l.startswith(("envbox: building", "envbox: extracting", "envbox: downloading"))][0]
    assert archive in first, result.stderr
    assert member[:60] in first, result.stderr
    assert "Errno" not in result.stderr and "/store/tmp" not in result.stderr, result.stderr
    assert len(first) < 1000


def release(env, blob: bytes, name: str, fmt: str | None = None) -> Path:
    path = env.base / name
    path.write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    catalog = Path(env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d"
    catalog.mkdir(parents=True, exist_ok=True)
    extra = f", format: {fmt}" if fmt else ""
    (catalog / "tool.yaml").write_text(
        f'tool: tool\nreleases:\n  - version: "1.0"\n    source: {{kind: archive, url: {path}, sha256: {sha}{extra}}}\n'
    )
    env.write_profile("p", 'command: ["true"]\ntools:\n  tool: "1.0"\n')
    env.give(env.base)
    return path


@pytest.mark.parametrize("member", [LONG_LEAF, LONG_PATH, LONG_DIR], ids=["leaf", "path", "dir"])
@pytest.mark.parametrize("kind", ["tar.gz", "tar-gnu", "zip"])
def test_over_long_member_names_name_archive_and_member(env, kind, member):
    members = {"usr/bin/ok": b"ok", member: b"x"}
    if kind == "zip":
        blob, name = zip_bytes(members), "tool.zip"
    elif kind == "tar-gnu":
        blob, name = tar_bytes(members, fmt=tarfile.GNU_FORMAT), "tool-gnu.tar.gz"
    else:
        blob, name = tar_bytes(members), "tool.tar.gz"
    release(env, blob, name)
    result = env.envbox("build", "p")
    one_line_naming(result, name, member)
    assert "longer than" in result.stderr


def test_over_long_symlink_target(env):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("usr/bin/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "a/" * 2100
        tar.addfile(info)
    release(env, buf.getvalue(), "links.tar.gz")
    result = env.envbox("build", "p")
    one_line_naming(result, "links.tar.gz", "usr/bin/link")


def test_write_errors_name_archive_and_member(root_env, tmp_path):
    """A member that cannot be written (a full disk) is named, with the real cause."""
    from envbox.core.errors import BuildError
    from envbox.sources import extract as ex

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], check=True)
    try:
        archive = tmp_path / "big.tar.gz"
        archive.write_bytes(tar_bytes({"usr/share/small": b"s", "usr/share/big": os.urandom(256 << 10)}))
        with pytest.raises(BuildError) as info:
            ex.extract(archive, tiny)
        message = info.value.message
        assert message.startswith("big.tar.gz: member 'usr/share/big' cannot be written"), message
        assert "No space left on device" in message and "\n" not in message
    finally:
        subprocess.run(["umount", "-l", str(tiny)], check=True)


# ---- deb (through dpkg-deb) and wheel, built here --------------------------------------------


def ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def make_deb(path: Path, members: dict[str, bytes]) -> Path:
    control = tar_bytes({"./control": b"Package: longname\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"})
    data = tar_bytes({f"./{k}": v for k, v in members.items()}, fmt=tarfile.GNU_FORMAT)
    path.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n") + ar_member("control.tar.gz", control) + ar_member("data.tar.gz", data))
    return path


@pytest.mark.parametrize("member", [LONG_LEAF, LONG_PATH], ids=["leaf", "path"])
def test_deb_with_over_long_names(tmp_path, member):
    from envbox.core.errors import BuildError
    from envbox.sources import deb
    from envbox.store.build import HELPER_ENV

    pkg = make_deb(tmp_path / "longname_1.0_all.deb", {"usr/bin/ok": b"ok", member: b"x"})
    root = tmp_path / "layer" / "root"
    root.mkdir(parents=True)
    with pytest.raises(BuildError) as info:
        deb.extract(pkg, root, HELPER_ENV, name="longname_1.0_all.deb")
    message = info.value.message
    assert message.startswith("longname_1.0_all.deb: member "), message
    assert member[:60] in message and "longer than" in message and "Errno" not in message
    assert not list((tmp_path / "layer").glob(".*.data.tar"))  # the temporary tar is gone


@pytest.mark.parametrize("member", [LONG_LEAF.replace("usr/share/x/", "pkg/"), "pkg/" + "/".join(["d" * 200] * 22)], ids=["leaf", "path"])
def test_wheel_with_over_long_names(tmp_path, member):
    """A wheel is extracted the way the wheel kind does it (zip, with its map)."""
    from envbox.core.errors import BuildError
    from envbox.sources import extract as ex

    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    whl.write_bytes(zip_bytes({"pkg/__init__.py": b"", member: b"x", "pkg-1.0.dist-info/RECORD": b""}))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BuildError) as info:
        ex.extract(whl, dest, fmt="zip", mapping={"pkg/": "usr/lib/python3/dist-packages/pkg/"}, label=whl.name)
    message = info.value.message
    assert message.startswith(f"{whl.name}: member "), message
    assert member[:60] in message and "Errno" not in message


@pytest.mark.parametrize(
    "name,problem",
    [
        ("a/" + "x" * 255, None),
        ("a/" + "x" * 256, "256-byte name component"),
        ("/".join(["y" * 100] * 39) + "/" + "z" * 156, None),  # 4095 bytes: the most there is room for
        ("/".join(["y" * 100] * 39) + "/" + "z" * 157, "4096-byte path"),
        ("/".join(["y" * 100] * 41), "-byte path, longer than"),
    ],
)
def test_normalise_length_limits(name, problem):
    from envbox.sources.specs import normalise

    if problem is None:
        assert normalise(name) == name
    else:
        with pytest.raises(ValueError, match=problem):
            normalise(name)
