"""Walk a layer tree: sanitise it and compute its content digest and manifest. Reads files."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from envbox.core.errors import BuildError

# What a layer may contain: directories, regular files and symlinks. Whiteouts and opaque
# markers would let a layer hide host files it does not replace, device nodes would give the
# app devices, and set-id bits would be privilege a layer cannot grant (the mount is nosuid
# anyway): refused or stripped here, whatever the source.
_STRIP_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    kind: str  # "d", "f", "l"
    mode: int  # permission bits
    size: int
    digest: str  # sha256 of the content (files) or of the target (links); "" for dirs

    def line(self) -> str:
        return f"{self.kind} {self.mode:04o} {self.size} {self.digest} {self.path}"


@dataclass(frozen=True)
class Manifest:
    entries: tuple[Entry, ...]

    def digest(self) -> str:
        h = hashlib.sha256()
        for entry in self.entries:
            h.update(entry.line().encode("utf-8", "surrogateescape") + b"\n")
        return h.hexdigest()

    def size(self) -> int:
        return sum(e.size for e in self.entries if e.kind == "f")

    def files(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries if e.kind != "d"}


def hash_file(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


def scan(root: Path, *, sanitise: bool = False) -> Manifest:
    """The manifest of the tree under root, without following any symlink.

    With sanitise=True, set-id/sticky bits are stripped and anything that is not a directory,
    regular file or symlink is an error naming it (used while building, before the digest).
    """
    entries: list[Entry] = []
    _walk(root, "", entries, sanitise=sanitise)
    return Manifest(tuple(sorted(entries, key=lambda e: e.path)))


def _walk(root: Path, rel: str, out: list[Entry], *, sanitise: bool) -> None:
    directory = root / rel if rel else root
    with os.scandir(directory) as it:
        names = sorted(e.name for e in it)
    for name in names:
        path = f"{rel}/{name}" if rel else name
        full = root / path
        st = os.lstat(full)
        mode = st.st_mode
        if sanitise and stat.S_IMODE(mode) & _STRIP_BITS and not stat.S_ISLNK(mode):
            os.chmod(full, stat.S_IMODE(mode) & ~_STRIP_BITS, follow_symlinks=False)
            mode &= ~_STRIP_BITS
        perm = stat.S_IMODE(mode)
        if stat.S_ISDIR(mode):
            out.append(Entry(path, "d", perm, 0, ""))
            _walk(root, path, out, sanitise=sanitise)
        elif stat.S_ISREG(mode):
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                out.append(Entry(path, "f", perm, st.st_size, hash_file(fd)))
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            target = os.readlink(full)
            out.append(Entry(path, "l", 0o777, len(target), hashlib.sha256(os.fsencode(target)).hexdigest()))
        else:
            raise BuildError(f"layer file {path!r} is a device, FIFO or socket; layers may hold only files, directories and symlinks")
