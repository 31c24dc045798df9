"""Hostile .deb data archives: the traversal corpus through the deb source's extractor (case 14/18)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from envbox.core.errors import BuildError
from envbox.sources import deb
from harness import Victim


def ar_member(name: bytes, data: bytes) -> bytes:
    header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8) + str(len(data)).encode().ljust(10) + b"`\n"
    return header + data + (b"\n" if len(data) % 2 else b"")


def control_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"Package: evil\nVersion: 1\nArchitecture: all\nMaintainer: x <x@y>\nDescription: x\n"
        info = tarfile.TarInfo("./control")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hostile_deb(tmp: Path, build) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        build(tar)
    path = tmp / "evil_1_all.deb"
    path.write_bytes(b"!<arch>\n" + ar_member(b"debian-binary", b"2.0\n") + ar_member(b"control.tar.gz", control_tar()) + ar_member(b"data.tar", buf.getvalue()))
    return path


def add(tar, name, *, kind=tarfile.REGTYPE, data=b"x", link="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def victim_case(victim_dir: str):
    return {
        "dotdot": lambda t: add(t, "./usr/../../victim/secret"),
        "absolute": lambda t: add(t, f"{victim_dir}/secret"),
        "symlink-then-write": lambda t: (add(t, "./usr/lnk", kind=tarfile.SYMTYPE, link=victim_dir), add(t, "./usr/lnk/secret")),
        "relative-symlink-out-then-write": lambda t: (add(t, "./usr/up", kind=tarfile.SYMTYPE, link="../../../../../../../.." + victim_dir), add(t, "./usr/up/new")),
        "hardlink-out": lambda t: add(t, "./usr/hl", kind=tarfile.LNKTYPE, link=f"{victim_dir}/secret"),
        "hardlink-to-symlink": lambda t: (add(t, "./usr/s", kind=tarfile.SYMTYPE, link=f"{victim_dir}/secret"), add(t, "./usr/h", kind=tarfile.LNKTYPE, link="./usr/s")),
        "symlink-then-file-same-name": lambda t: (add(t, "./usr/same", kind=tarfile.SYMTYPE, link=f"{victim_dir}/secret"), add(t, "./usr/same", data=b"overwrite")),
        "device": lambda t: add(t, "./usr/dev", kind=tarfile.CHRTYPE),
        "fifo": lambda t: add(t, "./usr/fifo", kind=tarfile.FIFOTYPE),
        "whiteout": lambda t: add(t, "./usr/bin/.wh.python3"),
    }


@pytest.mark.parametrize("case", sorted(victim_case("/x")))
def test_hostile_deb_data_is_refused_naming_the_member(tmp_path, case):
    victim = Victim.plant(tmp_path / "victim")
    root = tmp_path / "build" / "root"
    root.mkdir(parents=True)
    path = hostile_deb(tmp_path, victim_case(str(victim.path))[case])
    with pytest.raises(BuildError) as info:
        deb.extract(path, root, {"PATH": "/usr/bin:/bin"})
    assert "evil_1_all.deb" in info.value.message and "member" in info.value.message, info.value.message
    victim.check()
    assert not list((tmp_path / "build").glob(".*.data.tar")), "the temporary data.tar is removed"


def test_setuid_bits_in_a_deb_are_stripped(tmp_path):
    root = tmp_path / "build" / "root"
    root.mkdir(parents=True)
    path = hostile_deb(tmp_path, lambda t: add(t, "./usr/bin/suid", mode=0o4755))
    deb.extract(path, root, {"PATH": "/usr/bin:/bin"})
    assert os.stat(root / "usr/bin/suid").st_mode & 0o7777 == 0o755


def test_absolute_links_are_kept_as_links_into_the_layer(tmp_path):
    """Debian ships /usr/lib/python2.7/sitecustomize.py -> /etc/...: kept, never followed."""
    victim = Victim.plant(tmp_path / "victim")
    root = tmp_path / "build" / "root"
    root.mkdir(parents=True)
    path = hostile_deb(tmp_path, lambda t: add(t, "./usr/lib/site.py", kind=tarfile.SYMTYPE, link=f"{victim.path}/secret"))
    deb.extract(path, root, {"PATH": "/usr/bin:/bin"})
    assert os.readlink(root / "usr/lib/site.py") == f"{victim.path}/secret"
    victim.check()


def test_malformed_ar_header_and_unknown_compression(tmp_path):
    root = tmp_path / "build" / "root"
    root.mkdir(parents=True)
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"!<arch>\nnot an ar header at all\n")
    with pytest.raises(BuildError) as info:
        deb.extract(bad, root, {"PATH": "/usr/bin:/bin"})
    assert info.value.message.startswith("dpkg-deb cannot unpack bad.deb")
    odd = tmp_path / "odd.deb"
    odd.write_bytes(b"!<arch>\n" + ar_member(b"debian-binary", b"2.0\n") + ar_member(b"control.tar.gz", control_tar()) + ar_member(b"data.tar.zz", b"????"))
    with pytest.raises(BuildError) as info:
        deb.extract(odd, root, {"PATH": "/usr/bin:/bin"})
    assert "odd.deb" in info.value.message
