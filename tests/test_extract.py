"""Safe extraction: a corpus of hostile archives in every format, and good archives that must survive."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import struct
import subprocess
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from envbox.sources import extract as extract_module
from envbox.core.errors import BuildError
from envbox.sources.extract import Limits, check_map, detect_format, extract, map_path, normalise, strip

TAR_FORMATS = ("tar", "tar.gz", "tar.xz", "tar.bz2", "tar.zst")
FORMATS = (*TAR_FORMATS, "zip")
VICTIM = "{victim}"  # replaced by the absolute path of the victim directory


# ---- archive building ------------------------------------------------------------------------


@dataclass(frozen=True)
class E:
    kind: str  # file dir symlink hardlink fifo chr blk
    name: str
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


def F(name, data=b"x", mode=0o644):
    return E("file", name, data, mode)


def D(name, mode=0o755):
    return E("dir", name, mode=mode)


def L(name, target):
    return E("symlink", name, target=target)


def H(name, target):
    return E("hardlink", name, target=target)


def tar_bytes(entries, victim: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name.replace(VICTIM, victim))
            info.mode = e.mode
            info.mtime = 1_700_000_000
            kind = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                    "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}[e.kind]
            info.type = kind
            info.linkname = e.target.replace(VICTIM, victim)
            if e.kind == "file":
                info.size = len(e.data)
                tf.addfile(info, io.BytesIO(e.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def compress(data: bytes, fmt: str) -> bytes:
    if fmt == "tar":
        return data
    if fmt == "tar.gz":
        return gzip.compress(data)
    if fmt == "tar.xz":
        return lzma.compress(data)
    if fmt == "tar.bz2":
        return bz2.compress(data)
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def zip_bytes(entries, victim: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for e in entries:
            name = e.name.replace(VICTIM, victim)
            if e.kind == "dir" and not name.endswith("/"):
                name += "/"
            info = zipfile.ZipInfo(name, (2023, 11, 14, 22, 13, 20))
            info.create_system = 3
            ftype = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO, "chr": stat.S_IFCHR, "blk": stat.S_IFBLK}[e.kind]
            info.external_attr = (ftype | e.mode) << 16
            data = e.target.replace(VICTIM, victim).encode() if e.kind == "symlink" else e.data
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about the duplicates we mean to write
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def make(tmp_path: Path, fmt: str, entries, victim: Path | None = None) -> Path:
    victim_s = str(victim or tmp_path / "victim")
    data = zip_bytes(entries, victim_s) if fmt == "zip" else compress(tar_bytes(entries, victim_s), fmt)
    (tmp_path / "archives").mkdir(exist_ok=True)
    path = tmp_path / "archives" / f"test.{fmt}"
    path.write_bytes(data)
    return path


# ---- the victim: everything beside the destination must stay as it was -----------------------


@pytest.fixture
def world(tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "secret.txt").write_bytes(b"original secret\n")
    (victim / "sub" / "keep").write_bytes(b"keep me\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    return tmp_path


def snapshot(root: Path) -> dict:
    """Every entry under root but the destination and the archives: inode, mode, size, bytes or link target."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if dirpath == str(root):
            dirs[:] = [d for d in dirs if not d.startswith(("dest", "archives"))]
        for name in sorted(dirs + files):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out[os.path.relpath(path, root)] = (st.st_ino, st.st_mode, st.st_size, content)
    return out


# ---- the hostile corpus ----------------------------------------------------------------------

CHAIN = []  # CVE-2025-4517 shape: long dir names and links that make realpath() give up
_path = ""
for _step in "abcdefghijklmnop":
    CHAIN.append(D(os.path.join(_path, "d" * 247)))
    CHAIN.append(L(os.path.join(_path, _step), "d" * 247))
    _path = os.path.join(_path, "d" * 247)
_linkpath = os.path.join(*"abcdefghijklmnop", "l" * 254)
CHAIN.append(L(_linkpath, "../" * 16))
CHAIN.append(L("escape", _linkpath + "/../victim"))
CHAIN.append(F("escape/secret.txt", b"pwned"))

HOSTILE = [
    # id, entries, member named in the error, formats it can be written in
    ("dotdot", [F("../victim/secret.txt", b"pwned")], "../victim/secret.txt", FORMATS),
    ("dotdot-inner", [D("a"), F("a/../../victim/secret.txt", b"pwned")], "a/../../victim/secret.txt", FORMATS),
    ("absolute", [F(VICTIM + "/secret.txt", b"pwned")], VICTIM + "/secret.txt", FORMATS),
    ("symlink-out", [L("out", "../victim")], "out", FORMATS),
    ("symlink-out-absolute", [L("out", VICTIM)], "out", FORMATS),
    ("symlink-then-write-through", [D("d"), L("in", "d"), F("in/secret.txt", b"pwned")], "in/secret.txt", FORMATS),
    ("symlink-chain-escape", [D("d"), L("d/up", ".."), L("m", "d/up/../victim")], "m", FORMATS),
    ("symlink-then-file-same-name", [F("t", b"a"), L("s", "t"), F("s", b"pwned")], "s", FORMATS),
    ("file-then-symlink-same-name", [F("s", b"a"), F("t", b"b"), L("s", "t")], "s", FORMATS),
    ("deep-symlink-chain", CHAIN, _linkpath, TAR_FORMATS),
    ("hardlink-out", [H("h", "../victim/secret.txt")], "h", TAR_FORMATS),
    ("hardlink-absolute", [H("h", VICTIM + "/secret.txt")], "h", TAR_FORMATS),
    ("hardlink-to-symlink", [F("t", b"a"), L("s", "t"), H("h", "s")], "h", TAR_FORMATS),
    ("hardlink-to-nothing", [H("h", "missing")], "h", TAR_FORMATS),
    ("fifo", [E("fifo", "p")], "p", FORMATS),
    ("char-device", [E("chr", "null")], "null", FORMATS),
    ("block-device", [E("blk", "sda")], "sda", FORMATS),
    ("whiteout", [F(".wh.secret.txt", b"")], ".wh.secret.txt", FORMATS),
    ("opaque-marker", [D("d"), F("d/.wh..wh..opq", b"")], "d/.wh..wh..opq", FORMATS),
    ("duplicate-different", [F("a", b"one"), F("a", b"two")], "a", FORMATS),
    ("file-then-dir-same-name", [F("a", b"one"), F("a/b", b"two")], "a/b", FORMATS),
]


@pytest.mark.parametrize(
    "entries,member,fmt",
    [(entries, member, fmt) for _, entries, member, formats in HOSTILE for fmt in formats],
    ids=[f"{case}-{fmt}" for case, _, _, formats in HOSTILE for fmt in formats],
)
def test_hostile_archive_fails_naming_the_member_and_touches_nothing_outside(world, entries, member, fmt):
    archive = make(world, fmt, entries)
    before = snapshot(world)
    with pytest.raises(BuildError) as err:
        extract(archive, world / "dest")
    assert repr(member.replace(VICTIM, str(world / "victim"))[:200]).rstrip("'") in err.value.message, err.value.message
    assert err.value.hint
    assert snapshot(world) == before


def _zip_patched(tmp_path: Path, entries, old: bytes, new: bytes) -> Path:
    path = make(tmp_path, "zip", entries)
    data = path.read_bytes()
    assert data.count(old) >= 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))
    return path


def _zip_set_size(path: Path, name: bytes, size: int) -> None:
    """Rewrite the uncompressed size of member `name` in the central directory only."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + name_len]) == name:
            struct.pack_into("<L", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def test_zip_backslash_name(world):
    archive = make(world, "zip", [F("..\\victim\\secret.txt", b"pwned")])
    with pytest.raises(BuildError, match="backslash"):
        extract(archive, world / "dest")


def test_zip_nul_in_name(world):
    # zipfile cuts names at NUL when it reads them; the raw name still has it.
    archive = _zip_patched(world, [F("okXname", b"pwned")], b"okXname", b"ok\x00name")
    before = snapshot(world)
    with pytest.raises(BuildError, match="NUL"):
        extract(archive, world / "dest")
    assert snapshot(world) == before and os.listdir(world / "dest") == []


@pytest.mark.parametrize("delta", [-1, +1, -500])
def test_zip_declared_size_differs_from_data(world, delta):
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        archive = world / "archives" / "sized.zip"
        archive.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(archive, "w", compression=method) as zf:
            zf.writestr("data.bin", os.urandom(600) + bytes(400))
        _zip_set_size(archive, b"data.bin", 1000 + delta)
        dest = world / f"dest-{method}-{delta}"
        dest.mkdir()
        with pytest.raises(BuildError, match="data.bin") as err:
            extract(archive, dest)
        assert "declare" in err.value.message, err.value.message


def test_zip_overlapping_members(world):
    # Two central-directory entries sharing one local header and its data: the zip-bomb trick.
    archive = make(world, "zip", [F("a", bytes(5000)), F("b", bytes(5000))])
    data = bytearray(archive.read_bytes())
    cd = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", cd + 4)
    struct.pack_into("<L", data, second + 42, struct.unpack_from("<L", data, cd + 42)[0])
    archive.write_bytes(bytes(data))
    with pytest.raises(BuildError):
        extract(archive, world / "dest")


@pytest.mark.parametrize("fmt", ("tar.gz", "tar.zst", "zip"))
def test_decompression_bomb_is_stopped_by_the_default_limits(world, fmt):
    zeros = bytes(100 << 20)  # 100 MiB of zeros compresses ~1000:1
    if fmt == "zip":
        archive = world / "archives" / "bomb.zip"
        archive.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros", zeros)
    else:
        archive = make(world, fmt, [F("zeros", zeros)])
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(BuildError, match="decompression bomb"):
        extract(archive, world / "dest")


def test_member_count_and_byte_limits(world):
    archive = make(world, "tar.gz", [F(f"f{i}", b"x" * 100) for i in range(10)])
    with pytest.raises(BuildError, match="more than 5 members"):
        extract(archive, world / "dest", limits=Limits(max_members=5))
    (world / "dest2").mkdir()
    with pytest.raises(BuildError, match="more than 500 bytes"):
        extract(archive, world / "dest2", limits=Limits(max_bytes=500))


def test_hardlinks_to_one_big_file_count_against_the_limit(world):
    entries = [F("big", bytes(1000))] + [H(f"h{i}", "big") for i in range(20)]
    archive = make(world, "tar", entries)
    with pytest.raises(BuildError, match="more than 15000 bytes"):
        extract(archive, world / "dest", limits=Limits(max_bytes=15000))


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archive(world, fmt):
    entries = [F("one", os.urandom(40000)), F("two", os.urandom(40000))]
    archive = make(world, fmt, entries)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BuildError):
        extract(archive, world / "dest")


def test_tar_cut_at_a_member_boundary_is_truncated(world):
    # tarfile itself takes a missing end-of-archive marker as a normal end.
    raw = tar_bytes([F("one", b"a" * 512), F("two", b"b" * 512)], "")
    archive = world / "cut.tar"
    archive.write_bytes(raw[: 3 * 512])  # header+data of one, header of two... then nothing
    with pytest.raises(BuildError, match="truncated|cut short"):
        extract(archive, world / "dest")
    archive.write_bytes(raw[: 2 * 512])  # exactly one whole member, no end marker
    (world / "dest2").mkdir()
    with pytest.raises(BuildError, match="end-of-archive"):
        extract(archive, world / "dest2")


def test_garbage_after_the_end_marker(world):
    raw = tar_bytes([F("one", b"a")], "") + b"\x01" * 512
    archive = world / "trailing.tar"
    archive.write_bytes(raw)
    with pytest.raises(BuildError, match="after the end-of-archive"):
        extract(archive, world / "dest")


# ---- good archives ---------------------------------------------------------------------------

GOOD = [
    D("usr", 0o755),
    D("usr/bin", 0o750),
    F("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
    F("usr/lib/data.txt", b"data\n", 0o640),
    F("usr/lib/setuid", b"suid\n", 0o4755),
    D("usr/share", 0o1777),
    L("usr/bin/alias", "tool"),
    L("usr/bin/lib", "../lib"),
    F("usr/lib/data.txt", b"data\n", 0o640),  # an identical duplicate is fine
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_good_archive_keeps_modes_and_in_tree_symlinks(world, fmt, resolver):
    archive = make(world, fmt, GOOD)
    before = snapshot(world)
    result = extract(archive, world / "dest")
    root = world / "dest"
    mode = lambda p: stat.S_IMODE(os.lstat(root / p).st_mode)
    assert (root / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert mode("usr/bin/tool") == 0o755 and mode("usr/lib/data.txt") == 0o640
    assert mode("usr/lib/setuid") == 0o755  # set-uid stripped
    assert mode("usr/share") == 0o777  # sticky stripped
    assert mode("usr/bin") == 0o750 and mode("usr/lib") == 0o755  # explicit, and implied
    assert os.readlink(root / "usr/bin/alias") == "tool"
    assert os.readlink(root / "usr/bin/lib") == "../lib"
    assert (root / "usr/bin/lib/data.txt").read_bytes() == b"data\n"
    files = {m.path: m for m in result.members}
    assert files["usr/bin/tool"].sha256 == hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()
    assert snapshot(world) == before


def test_hardlink_inside_becomes_a_copy(world):
    archive = make(world, "tar.gz", [F("a", b"same", 0o755), H("b", "a")])
    extract(archive, world / "dest")
    a, b = world / "dest/a", world / "dest/b"
    assert b.read_bytes() == b"same" and os.stat(a).st_ino != os.stat(b).st_ino
    assert stat.S_IMODE(os.stat(b).st_mode) == 0o755


def test_map_and_strip_components(world):
    entries = [D("./"), F("./pkg/bin/tool", b"t", 0o755), F("./pkg/README", b"r"), F("./pkg/data/x/y", b"y"), F("./pkg/one", b"1")]
    archive = make(world, "tar.gz", entries)
    mapping = {"bin/": "usr/bin/", "data/": "usr/share/thing/", "one": "usr/lib/one"}
    result = extract(archive, world / "dest", strip_components=1, mapping=mapping)
    got = sorted(m.path for m in result.members)
    assert got == ["usr/bin/tool", "usr/lib/one", "usr/share/thing/x/y"]
    assert result.skipped == 2  # "./" and README
    assert stat.S_IMODE(os.stat(world / "dest/usr/bin/tool").st_mode) == 0o755


@pytest.fixture(params=["openat2", "component-walk"])
def resolver(request, monkeypatch):
    """Both ways directories are opened: openat2 with RESOLVE_NO_SYMLINKS, and the walk that
    kernels without openat2 (or seccomp filters that refuse it) fall back to."""
    if request.param == "component-walk":
        monkeypatch.setattr(extract_module, "_openat2_works", False)
    return request.param


@pytest.mark.parametrize("fmt", ("tar", "zip"))
def test_without_openat2_every_hostile_archive_still_fails(world, fmt, monkeypatch):
    monkeypatch.setattr(extract_module, "_openat2_works", False)
    before = snapshot(world)
    for n, (case, entries, member, formats) in enumerate(HOSTILE):
        if fmt in formats:
            archive = make(world, fmt, entries)
            (world / f"dest-{n}").mkdir()
            with pytest.raises(BuildError):
                extract(archive, world / f"dest-{n}")
    assert snapshot(world) == before
    assert extract_module._openat2_works is False


@pytest.mark.parametrize("fmt", ("tar", "zip"))
def test_symlinks_already_in_the_destination_are_never_followed(world, fmt, resolver):
    # A second archive extracted into the same layer (npm: node, then npm) must not be able
    # to write through links the first one left, even ones the checks would have allowed.
    (world / "dest/usr").symlink_to("../victim")
    (world / "dest/x").symlink_to("../victim/secret.txt")
    before = snapshot(world)
    for entries, member in (([F("usr/planted.txt", b"pwned")], "usr/planted.txt"), ([F("x", b"pwned")], "x")):
        archive = make(world, fmt, entries)
        with pytest.raises(BuildError) as err:
            extract(archive, world / "dest")
        assert repr(member) in err.value.message
    assert snapshot(world) == before


def test_extracting_onto_an_existing_file_fails(world):
    (world / "dest/usr").mkdir()
    (world / "dest/usr/x").write_bytes(b"mine")
    archive = make(world, "zip", [F("usr/x", b"theirs")])
    with pytest.raises(BuildError, match="already in the layer"):
        extract(archive, world / "dest")
    assert (world / "dest/usr/x").read_bytes() == b"mine"


# ---- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,want",
    [
        ("a/b", "a/b"),
        ("./a//b/", "a/b"),
        ("./", ""),
        ("a/./b", "a/b"),
        ("/etc/passwd", ValueError),
        ("a/../b", ValueError),
        ("..", ValueError),
        ("a\0b", ValueError),
        (".wh.x", ValueError),
        ("d/.wh..wh..opq", ValueError),
        ("a/b.wh.c", "a/b.wh.c"),
    ],
)
def test_normalise(name, want):
    if want is ValueError:
        with pytest.raises(ValueError):
            normalise(name)
    else:
        assert normalise(name) == want


@pytest.mark.parametrize(
    "name,mapping,want",
    [
        ("cmake/data/bin/cmake", {"cmake/data/bin/": "usr/bin/"}, "usr/bin/cmake"),
        ("cmake/data/bin", {"cmake/data/bin/": "usr/bin/"}, "usr/bin"),
        ("cmake/data/binary", {"cmake/data/bin/": "usr/bin/"}, None),
        ("ninja-1.13.2.data/scripts/ninja", {"ninja-1.13.2.data/scripts/ninja": "usr/bin/ninja"}, "usr/bin/ninja"),
        ("pkg/lib/x/y", {"pkg/": "opt/pkg/", "pkg/lib/": "usr/lib/"}, "usr/lib/x/y"),  # longest key wins
        ("other", {"pkg/": "opt/pkg/"}, None),
        ("other", None, "other"),
    ],
)
def test_map_path(name, mapping, want):
    assert map_path(name, mapping) == want


@pytest.mark.parametrize(
    "mapping",
    [{}, {"a/": "usr/a"}, {"a": "usr/a/"}, {"../a": "usr/a"}, {"a": "/usr/a"}, {"a": "usr/../../x"}, {"a/": ".wh.x/"}, {"a": 3}],
)
def test_check_map_rejects(mapping):
    with pytest.raises(ValueError):
        check_map(mapping)


def test_strip():
    assert strip("package/bin/node", 1) == "bin/node"
    assert strip("package", 1) is None
    assert strip("a/b", 0) == "a/b"


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_format(tmp_path, fmt):
    assert detect_format(make(tmp_path, fmt, [F("a")])) == fmt
