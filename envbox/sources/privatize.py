"""Keep a newer suite's libraries private to its layer: move them aside and point the layer's
ELF files at them with patchelf (a host tool). Reads ELF headers itself. Side effects."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from envbox import helper
from envbox.core.errors import BuildError

DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


PT_INTERP, PT_DYNAMIC = 3, 2
DT_NULL, DT_NEEDED, DT_RPATH, DT_RUNPATH = 0, 1, 15, 29


@dataclass(frozen=True)
class ElfInfo:
    interpreter: str  # PT_INTERP, "" when none (shared libraries, static programs)
    needed: int  # number of DT_NEEDED entries
    rpath: bool
    runpath: bool


def elf_info(path: Path) -> ElfInfo | None:
    """PT_INTERP and dynamic tags of an ELF file, or None when it is not ELF. Reads the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
                return None
            is64, end = head[4] == 2, "<" if head[5] == 1 else ">"
            interp, dyn = "", b""
            for ptype, offset, filesz in _program_headers(f, head, is64, end):
                if ptype in (PT_INTERP, PT_DYNAMIC):
                    f.seek(offset)
                    data = f.read(filesz)
                    if ptype == PT_INTERP:
                        interp = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                    else:
                        dyn = data
    except (OSError, struct.error):
        return None
    fmt = end + ("qQ" if is64 else "iI")
    tags = []
    for tag, _ in struct.iter_unpack(fmt, dyn[: len(dyn) - len(dyn) % struct.calcsize(fmt)]):
        if tag == DT_NULL:
            break
        tags.append(tag)
    return ElfInfo(interp, tags.count(DT_NEEDED), DT_RPATH in tags, DT_RUNPATH in tags)


def _program_headers(f, head: bytes, is64: bool, end: str):
    """(p_type, p_offset, p_filesz) of each program header (elf(5))."""
    if is64:
        (phoff,), (phentsize, phnum) = struct.unpack_from(end + "Q", head, 32), struct.unpack_from(end + "HH", head, 54)
    else:
        (phoff,), (phentsize, phnum) = struct.unpack_from(end + "I", head, 28), struct.unpack_from(end + "HH", head, 42)
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        ph = f.read(phentsize)
        if is64:
            yield struct.unpack_from(end + "I", ph, 0)[0], struct.unpack_from(end + "Q", ph, 8)[0], struct.unpack_from(end + "Q", ph, 32)[0]
        else:
            ptype, offset = struct.unpack_from(end + "II", ph, 0)
            yield ptype, offset, struct.unpack_from(end + "I", ph, 16)[0]


@dataclass(frozen=True)
class Privatized:
    libraries: int  # entries moved into usr/lib/envbox/<tag>
    patched: tuple[str, ...]  # layer paths whose interpreter or rpath now points there


def privatize(root: Path, tag: str, *, patchelf: Path, env: Mapping[str, str]) -> Privatized:
    """Keep the layer's libraries out of the shared /usr/lib: only the layer's programs use them.

    Everything under usr/lib/<multiarch>/ moves to usr/lib/envbox/<tag>/, so nothing of the
    layer shadows the host's libc, libssl... (host programs in the namespace keep theirs).
    Every ELF program of the layer gets that dir's loader as PT_INTERP and the dir as DT_RPATH.
    It must be DT_RPATH: a DT_RUNPATH applies only to the object's own DT_NEEDED, while the
    program's DT_RPATH is also searched for the dependencies of libraries and of dlopen()ed
    modules (lib-dynload/_ssl.so -> libssl), ld.so(8).
    """
    root = Path(root)
    private = root / "usr" / "lib" / "envbox" / tag
    private.mkdir(parents=True, exist_ok=True)
    moved = 0
    for libdir in sorted((root / "usr" / "lib").glob("*-linux-gnu*")):
        if libdir.is_dir() and not libdir.is_symlink():
            moved += _move_tree(libdir, private, keep=KEEP_IN_PLACE)
            if not any(libdir.iterdir()):
                libdir.rmdir()
    lib64 = root / "usr" / "lib64"
    if lib64.is_dir() and not lib64.is_symlink():
        for entry in sorted(lib64.iterdir()):
            if os.path.lexists(private / entry.name):
                entry.unlink()  # the ld.so link into usr/lib/<multiarch>, whose target moved
            else:
                os.rename(entry, private / entry.name)
                moved += 1
        lib64.rmdir()
    target = f"/usr/lib/envbox/{tag}"
    _repoint_links(root, private)
    patched = []
    for path in _files(root):
        info = elf_info(path)
        if info is None or not (info.interpreter or info.runpath):
            continue
        inside = path.is_relative_to(private)
        argv = [str(patchelf)]
        loader = private / Path(info.interpreter).name if info.interpreter else None
        if info.interpreter and not inside and loader is not None and loader.is_file():
            argv += ["--set-interpreter", f"{target}/{loader.name}"]
        if info.runpath or (info.interpreter and not inside):
            old = _patchelf_out([str(patchelf), "--print-rpath", str(path)], env)
            entries = [e for e in old.split(":") if e and e != target]
            argv += ["--force-rpath", "--set-rpath", ":".join([target, *entries])]
        if len(argv) > 1:
            _patchelf_out([*argv, str(path)], env)
            patched.append(str(path.relative_to(root)))
    return Privatized(moved, tuple(patched))


# Interpreter data under usr/lib/<multiarch>/ found there by a compiled-in path (ruby's
# rbconfig.rb and extension modules): left in place. Nothing in them is a library another
# program links to; the modules are loaded by the layer's own (private, DT_RPATH) interpreter.
KEEP_IN_PLACE = ("ruby",)


def _repoint_links(root: Path, private: Path) -> None:
    """Links elsewhere in the layer into usr/lib/<multiarch>/ (e.g. gcc's libstdc++.so ->
    ../../../x86_64-linux-gnu/libstdc++.so.6) follow the library into the private dir; left
    dangling they would fall through to the host's older copy."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == private or here.is_relative_to(private):
            continue
        for name in dirnames + filenames:
            link = here / name
            if not link.is_symlink():
                continue
            dest = Path(os.path.normpath(os.path.join(here, os.readlink(link))))
            if not dest.is_relative_to(root):
                continue
            rel = dest.relative_to(root)
            if len(rel.parts) != 4 or rel.parts[:2] != ("usr", "lib") or "-linux-gnu" not in rel.parts[2]:
                continue
            moved = private / rel.parts[3]
            if os.path.lexists(moved):
                link.unlink()
                link.symlink_to(os.path.relpath(moved, here))


def _move_tree(src: Path, dst: Path, keep: tuple[str, ...] = ()) -> int:
    count = 0
    for entry in sorted(src.iterdir()):
        if entry.name in keep and entry.is_dir() and not entry.is_symlink():
            continue
        to = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and to.is_dir():
            count += _move_tree(entry, to)
            entry.rmdir()
        elif os.path.lexists(to):
            raise BuildError(f"private libraries: {to.name} exists twice", "report this layer's package list")
        else:
            os.rename(entry, to)
            count += 1
    return count


def _files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _patchelf_out(argv: list[str], env: Mapping[str, str]) -> str:
    try:
        result = helper.run(argv, env={"PATH": DEFAULT_PATH, **env}, timeout_s=helper.timeout(120))
    except helper.HelperFailed as exc:
        raise BuildError(f"patchelf failed on {argv[-1]}: {exc.reason}", "report the package; run without `private:` meanwhile") from None
    return result.stdout.strip()
