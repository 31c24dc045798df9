"""Extract tar (plain, gz, xz, bz2, zst) and zip archives safely below a directory. Files, no network.

Safe by construction rather than by filtering: every member name is checked before it is
used, and every file is created relative to a directory descriptor that was reached without
following any symlink (openat2 with RESOLVE_NO_SYMLINKS, or one component at a time with
O_NOFOLLOW), so nothing is ever written through a link, whatever earlier members created.
Symlinks must stay inside the tree (with rooted=True the tree is a root file system image, a
layer, so an absolute target means a path inside it, as it will once mounted; such links are
still never followed here), hardlinks become copies of files already extracted,
devices, FIFOs and overlay whiteouts are refused, set-id and sticky bits are dropped.
Expansion is bounded in bytes, members and compression ratio. On error this raises BuildError
naming the member and leaves the half-filled directory to the caller, who gave a private one
and throws it away.
"""

from __future__ import annotations

import bz2
import calendar
import ctypes
import errno
import gzip
import hashlib
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from envbox import helper
from envbox.core.errors import BuildError
from envbox.sources.specs import FORMATS, PATH_MAX, check_map, map_path, normalise, strip  # noqa: F401  (re-exported)

CHUNK = 1 << 20
MAX_HEADER = 1 << 20  # a pax or GNU long-name header larger than this is an attack, not a name
MAX_LINK_HOPS = 40  # the kernel's own limit on symlinks followed in one lookup
HINT = "the archive is unsafe or damaged; nothing from it was kept. Check where it comes from"
_OPEN_DIRS = 64  # directory descriptors kept open while extracting
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 4 << 30  # total bytes the archive may expand to
    max_members: int = 200_000
    max_ratio: float = 100.0  # expanded / compressed size ...
    ratio_floor: int = 64 << 20  # ... checked once this many bytes came out (small files vary widely)


@dataclass(frozen=True)
class Member:
    name: str  # normalised name in the archive
    path: str  # where it went, relative to the destination
    kind: str  # "f" file, "d" directory, "l" symlink
    mode: int  # permission bits as written
    size: int = 0
    sha256: str = ""  # of a file's content
    target: str = ""  # of a symlink


@dataclass(frozen=True)
class Extracted:
    members: tuple[Member, ...]
    skipped: int  # members left out by strip_components or the map


# ---- names and maps (pure) -------------------------------------------------------------------


def _lexically_inside(link_path: str, target: str) -> bool:
    depth = link_path.count("/")  # components of the link's directory
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def detect_format(path: Path) -> str:
    """The archive format from its first bytes (and the tar magic at offset 257)."""
    from envbox import fsio

    try:
        fd, _ = fsio.open_regular(path, follow=True)
    except fsio.FileRefused as exc:
        raise BuildError(f"{path}: {exc.why}", HINT) from None
    with os.fdopen(fd, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "tar.zst"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    raise BuildError(f"{path.name}: not a tar or zip archive I recognise", f"set format: to one of {', '.join(FORMATS)}")


# ---- openat2: a whole relative path in one call, with the kernel refusing every symlink ---------

_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_SYS_OPENAT2 = 437  # the same number on every architecture (added in Linux 5.6)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_openat2_works = True


def _open_beneath(dirfd: int, path: str) -> int | None:
    """Directory path below dirfd, or None where it is missing, is not a plain directory chain,
    or openat2 is unavailable (then callers walk one component at a time instead)."""
    global _openat2_works
    if not _openat2_works:
        return None
    how = _OpenHow(_DIR_FLAGS, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS | _RESOLVE_BENEATH)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd >= 0:
        return fd
    if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
        _openat2_works = False  # old kernel or a seccomp filter: fall back for good
    return None


# ---- the entry point -------------------------------------------------------------------------


def extract(
    archive: Path,
    dest: Path,
    *,
    fmt: str | None = None,
    strip_components: int = 0,
    mapping: Mapping[str, str] | None = None,
    limits: Limits = Limits(),
    label: str | None = None,
    rooted: bool = False,
) -> Extracted:
    """Extract archive into the existing directory dest; see the module docstring for the rules."""
    fmt = fmt or detect_format(archive)
    if fmt not in FORMATS:
        raise BuildError(f"unknown archive format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    label = label or archive.name
    budget = _Budget(label, os.path.getsize(archive), limits)
    with _Tree(dest, label, budget, rooted=rooted) as tree:
        items = _zip_items(archive, tree, budget) if fmt == "zip" else _tar_items(archive, fmt, tree)
        skipped = 0
        try:
            for name, item in items:
                budget.member(name)
                rel = strip(name, strip_components) if name else None
                path = map_path(rel, mapping) if rel else None
                if path is None:
                    skipped += 1
                    continue
                try:
                    item(path)
                except OSError as exc:
                    # ENAMETOOLONG, ENOSPC, EDQUOT, EMFILE...: the archive and the member, not
                    # the store's temporary path.
                    raise _fail(label, name, f"cannot be written to {_short(path)}: {exc.strerror or exc}") from None
        finally:
            items.close()  # stops a zstd child now, not when the traceback is freed
        tree.finish()
        return Extracted(tuple(tree.records.values()), skipped)


class _Budget:
    """Counts members and expanded bytes against the limits."""

    def __init__(self, label: str, compressed: int, limits: Limits):
        self.label, self.compressed, self.limits = label, max(compressed, 1), limits
        self.bytes = self.members = 0

    def member(self, name: str) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise BuildError(f"{self.label}: more than {self.limits.max_members} members (at {name!r})", HINT)

    def add(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_bytes:
            raise BuildError(f"{self.label}: expands to more than {self.limits.max_bytes} bytes", HINT)
        if self.bytes > self.limits.ratio_floor and self.bytes > self.limits.max_ratio * self.compressed:
            raise BuildError(
                f"{self.label}: expands more than {self.limits.max_ratio:.0f} times ({self.compressed} compressed bytes gave {self.bytes} so far): a decompression bomb?",
                HINT,
            )


def _short(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _fail(label: str, name: str, problem: str) -> BuildError:
    return BuildError(f"{label}: member {_short(name)} {problem}", HINT)


# ---- writing below a directory descriptor ----------------------------------------------------


class _Tree:
    """The destination, written only through descriptors, never through a path with symlinks."""

    def __init__(self, dest: Path, label: str, budget: _Budget, *, rooted: bool = False):
        self.label, self.budget, self.rooted = label, budget, rooted
        self.root = os.open(dest, _DIR_FLAGS)
        self.records: dict[str, Member] = {}  # by path in the tree
        self.by_name: dict[str, str] = {}  # archive name -> path in the tree, for hardlinks
        self.dir_modes: dict[str, int] = {}  # directories we created or were told the mode of
        self._fds: OrderedDict[str, int] = OrderedDict()  # directory path -> descriptor, recent last

    def __enter__(self) -> "_Tree":
        return self

    def __exit__(self, *exc) -> None:
        for fd in self._fds.values():
            os.close(fd)
        os.close(self.root)

    def _parent(self, name: str, path: str) -> tuple[int, str]:
        """(descriptor of path's directory, created as needed; leaf name)."""
        parent, _, leaf = path.rpartition("/")
        return self._dir(name, parent, create=True), leaf

    def _dir(self, name: str, path: str, *, create: bool) -> int:
        """A descriptor for directory `path`, never reached through a symlink.

        The deepest existing part comes from the cache or one openat2 call that refuses every
        symlink; the rest is made one component at a time (mkdir, then open with O_NOFOLLOW).
        Borrowed: valid until the next call. Recent directories stay open, because npm's
        tarballs are sorted by file name, not by directory.
        """
        if not path:
            return self.root
        if path in self._fds:
            self._fds.move_to_end(path)
            return self._fds[path]
        parts = path.split("/")
        depth, fd = len(parts), self.root
        while depth:  # the deepest directory already there: cached, or one openat2 away
            prefix = "/".join(parts[:depth])
            found = self._fds.get(prefix)
            if found is None and (found := _open_beneath(self.root, prefix)) is not None:
                self._keep(prefix, found)
            if found is not None:
                fd = found
                break
            depth -= 1
        for n in range(depth, len(parts)):
            sofar = "/".join(parts[: n + 1])
            known = self.records.get(sofar)
            if known and known.kind != "d":
                raise _fail(self.label, name, f"needs {sofar!r} to be a directory, but an earlier member made it a {_KINDS[known.kind]}")
            try:
                if create:
                    # mkdir never follows a symlink: one already there gives EEXIST, and the
                    # O_NOFOLLOW open below then refuses it.
                    try:
                        os.mkdir(parts[n], 0o700, dir_fd=fd)
                        self.dir_modes.setdefault(sofar, 0o755)
                    except FileExistsError:
                        pass
                fd = os.open(parts[n], _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # ELOOP/ENOTDIR: the component exists and is a symlink or a file; never follow it.
                raise _fail(self.label, name, f"cannot go through {sofar!r}: {exc.strerror}") from None
            self._keep(sofar, fd)
        self._fds.move_to_end(path)
        return fd

    def _keep(self, path: str, fd: int) -> None:
        self._fds[path] = fd
        if len(self._fds) > _OPEN_DIRS:  # the oldest is never one of the path being walked
            os.close(self._fds.popitem(last=False)[1])

    def _existing(self, name: str, path: str, kind: str) -> Member | None:
        known = self.records.get(path)
        if known is None:
            return None
        if known.kind != kind:
            raise _fail(self.label, name, f"is a {_KINDS[kind]}, but an earlier member made {path!r} a {_KINDS[known.kind]}")
        return known

    def _record(self, member: Member) -> None:
        self.records[member.path] = member
        self.by_name.setdefault(member.name, member.path)

    def directory(self, name: str, path: str, mode: int) -> None:
        self._existing(name, path, "d")
        self._dir(name, path, create=True)
        self.dir_modes[path] = mode & 0o777
        self._record(Member(name, path, "d", mode & 0o777))

    def file(self, name: str, path: str, mode: int, chunks: Iterator[bytes], *, mtime: float | None = None) -> None:
        known = self._existing(name, path, "f")
        if known:  # the same name twice: fine only when the content is the same
            digest, size = _digest(chunks)
            if (digest, size) != (known.sha256, known.size):
                raise _fail(self.label, name, f"appears twice in the archive with different content ({path!r})")
            return
        parent, leaf = self._parent(name, path)
        try:
            fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        except FileExistsError:
            raise _fail(self.label, name, f"would replace {path!r}, which is already in the layer") from None
        try:
            h, size = hashlib.sha256(), 0
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            # Set-id and sticky bits are privilege a layer cannot grant; everything else is kept.
            os.fchmod(fd, mode & 0o777)
            if mtime is not None and 0 <= mtime < 1 << 33:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        self._record(Member(name, path, "f", mode & 0o777, size, h.hexdigest()))

    def symlink(self, name: str, path: str, target: str) -> None:
        if len(os.fsencode(target)) > PATH_MAX:
            raise _fail(self.label, name, f"is a symlink with a {len(os.fsencode(target))}-byte target, longer than the {PATH_MAX}-byte limit of paths")
        if not target or "\0" in target or (os.path.isabs(target) and not self.rooted):
            raise _fail(self.label, name, f"is a symlink to {target!r}: only relative links inside the tree are allowed")
        if not os.path.isabs(target) and not _lexically_inside(path, target):
            raise _fail(self.label, name, f"is a symlink to {target!r}, which points outside the tree")
        known = self._existing(name, path, "l")
        if known:
            if known.target != target:
                raise _fail(self.label, name, f"appears twice in the archive with different link targets ({path!r})")
            return
        parent, leaf = self._parent(name, path)
        try:
            os.symlink(target, leaf, dir_fd=parent)
        except FileExistsError:
            raise _fail(self.label, name, f"would replace {path!r}, which is already in the layer") from None
        self._record(Member(name, path, "l", 0o777, target=target))

    def hardlink(self, name: str, path: str, target_name: str) -> None:
        target_path = self.by_name.get(target_name)
        known = self.records.get(target_path) if target_path else None
        if known is None or known.kind != "f":
            what = "not a regular file extracted before it" if known is None else f"a {_KINDS[known.kind]}"
            raise _fail(self.label, name, f"is a hardlink to {target_name!r}, which is {what}")
        # A copy, not a link: a hardlink would tie this layer's inode to whatever else links
        # it. Copies count against the budget: a thousand links to one big file are a bomb.
        self.budget.add(known.size)
        src_parent, leaf = self._parent(name, target_path)
        src = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_parent)
        with os.fdopen(src, "rb") as f:
            self.file(name, path, known.mode, iter(lambda: f.read(CHUNK), b""))

    def finish(self) -> None:
        """Check every symlink against the final tree, then give directories their modes."""
        for member in self.records.values():
            try:
                inside = member.kind != "l" or self._resolves_inside(member.path, member.target)
            except OSError as exc:
                raise _fail(self.label, member.name, f"is a symlink to {member.target!r} that cannot be followed: {exc.strerror}") from None
            if not inside:
                raise _fail(self.label, member.name, f"is a symlink to {member.target!r}, which leads outside the tree through other links")
        for path in sorted(self.dir_modes, key=lambda p: -p.count("/")):
            try:
                os.fchmod(self._dir(path, path, create=False), self.dir_modes[path])
            except OSError as exc:
                raise _fail(self.label, path, f"cannot be given its mode: {exc.strerror}") from None

    def _resolves_inside(self, link_path: str, target: str) -> bool:
        """Follow target through the links really in the tree, never above its root."""
        parts = [] if os.path.isabs(target) else link_path.split("/")[:-1]
        todo = target.split("/")
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return False
                parts.pop()
                continue
            parts.append(part)
            try:
                # parts holds no symlinks (each one met is replaced by its target), so this
                # lstat does not follow any link the archive made.
                st = os.lstat("/".join(parts), dir_fd=self.root)
            except (FileNotFoundError, NotADirectoryError):
                continue  # dangling here (maybe provided by a lower layer): the rest is lexical
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                nxt = os.readlink("/".join(parts), dir_fd=self.root)
                if hops > MAX_LINK_HOPS or (os.path.isabs(nxt) and not self.rooted):
                    return False
                parts.pop()
                if os.path.isabs(nxt):
                    parts = []  # rooted: an absolute target starts again at the tree's root
                todo = nxt.split("/") + todo
        return True


_KINDS = {"f": "file", "d": "directory", "l": "symlink"}


def _digest(chunks: Iterator[bytes]) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


# ---- tar -------------------------------------------------------------------------------------


class _Counted:
    """The decompressed tar stream, counted against the budget as it is read."""

    def __init__(self, raw, budget: _Budget):
        self.raw, self.budget = raw, budget

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size and size > 0 else CHUNK)
        self.budget.add(len(data))
        return data


class _Damaged(Exception):
    """Raised inside tarfile's parser; _tar_items adds the archive's name."""


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parser made strict: a truncated archive or a giant header is an error."""

    @classmethod
    def fromtarfile(cls, tf):
        # Same three steps as tarfile's own, with two checks: tarfile takes a short read or
        # a bad header after the first member as the normal end, which hides truncation.
        buf = tf.fileobj.read(tarfile.BLOCKSIZE)
        if len(buf) < tarfile.BLOCKSIZE:
            raise _Damaged("ends without the end-of-archive marker (truncated?)")
        try:
            obj = cls.frombuf(buf, tf.encoding, tf.errors)
        except tarfile.InvalidHeaderError as exc:
            raise _Damaged(f"has a damaged header at byte {tf.fileobj.tell() - tarfile.BLOCKSIZE}: {exc}") from None
        obj.offset = tf.fileobj.tell() - tarfile.BLOCKSIZE
        return obj._proc_member(tf)

    def _proc_member(self, tf):
        # tarfile reads extended headers into memory whole: bound them before it does.
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
            if self.size > MAX_HEADER:
                raise _Damaged(f"has a {self.size}-byte extended header")
        return super()._proc_member(tf)


def _tar_items(archive: Path, fmt: str, tree: _Tree):
    raw, proc = _decompressed(archive, fmt)
    try:
        counted = _Counted(raw, tree.budget)
        try:
            with tarfile.open(fileobj=counted, mode="r|", tarinfo=_TarInfo) as tf:
                while True:
                    member = tf.next()
                    if member is None:
                        break
                    tf.members.clear()  # stream mode needs no index; don't grow one per member
                    yield from _tar_member(tf, member, tree)
            while chunk := counted.read(CHUNK):
                if chunk.count(0) != len(chunk):
                    raise BuildError(f"{tree.label}: data after the end-of-archive marker", HINT)
        except _Damaged as exc:
            raise BuildError(f"{tree.label}: {exc}", HINT) from None
        except _READ_ERRORS as exc:
            raise BuildError(f"{tree.label}: damaged archive: {exc}", HINT) from None
        if proc is not None:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip()
            if proc.wait() != 0:
                if proc.timed_out:
                    raise BuildError(f"{tree.label}: zstd did not finish within the helpers' timeout and was stopped", "set ENVBOX_HELPER_TIMEOUT for a very slow disk")
                raise BuildError(f"{tree.label}: zstd failed: {helper.first_meaningful_line(err) or proc.returncode}", HINT)
    finally:
        raw.close()
        if proc is not None:
            helper.finish(proc)


# What decompressors and tarfile raise on damaged input (gzip's BadGzipFile and bz2's
# "Invalid data stream" are OSErrors).
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def _decompressed(archive: Path, fmt: str):
    if fmt == "tar.zst":
        # The zstd CLI decompresses in a pipe; its exit status catches a truncated frame.
        try:
            proc = helper.popen(["zstd", "-dcq", "--", str(archive)])
        except helper.HelperFailed as exc:
            raise BuildError(f"{archive.name}: cannot decompress: {exc}", "install zstd (apt-get install zstd)") from None
        return proc.stdout, proc
    opener = {"tar": open, "tar.gz": gzip.open, "tar.xz": lzma.open, "tar.bz2": bz2.open}[fmt]
    return opener(archive, "rb"), None


def _tar_member(tf: tarfile.TarFile, m: tarfile.TarInfo, tree: _Tree):
    label = tree.label
    try:
        name = normalise(m.name)
    except ValueError as exc:
        raise _fail(label, m.name, str(exc)) from None
    if m.isdir():
        yield name, lambda path: tree.directory(name, path, m.mode)
    elif m.issparse():
        raise _fail(label, m.name, "is a sparse file, which envbox does not extract")
    elif m.isreg():
        def write(path: str) -> None:
            f = tf.extractfile(m)
            tree.file(name, path, m.mode, _exact(f, m.size, label, name), mtime=m.mtime)
        yield name, write
    elif m.issym():
        yield name, lambda path: tree.symlink(name, path, m.linkname)
    elif m.islnk():
        try:
            target = normalise(m.linkname)
        except ValueError as exc:
            raise _fail(label, m.name, f"is a hardlink to {m.linkname!r}, which {exc}") from None
        yield name, lambda path: tree.hardlink(name, path, target)
    else:
        what = "device node" if (m.ischr() or m.isblk()) else "FIFO" if m.isfifo() else f"member of tar type {m.type!r}"
        raise _fail(label, m.name, f"is a {what}; layers hold only files, directories and symlinks")


def _exact(f, size: int, label: str, name: str) -> Iterator[bytes]:
    left = size
    while left > 0:
        try:
            chunk = f.read(min(CHUNK, left))
        except _Damaged as exc:
            raise _fail(label, name, f"cannot be read: {exc}") from None
        except _READ_ERRORS as exc:
            raise _fail(label, name, f"cannot be read: {exc} (damaged or truncated archive)") from None
        if not chunk:
            raise _fail(label, name, f"is cut short: {size - left} of {size} bytes (truncated archive)")
        left -= len(chunk)
        yield chunk


# ---- zip -------------------------------------------------------------------------------------

_LOCAL = struct.Struct("<4s5H3L2H")  # local file header: signature ... name length, extra length


def _zip_items(archive: Path, tree: _Tree, budget: _Budget):
    label = tree.label
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BuildError(f"{label}: damaged zip archive: {exc}", HINT) from None
    with zf, open(archive, "rb") as raw:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_members:
            raise BuildError(f"{label}: {len(infos)} members, more than {budget.limits.max_members}", HINT)
        declared = sum(i.file_size for i in infos)
        _Budget(label, budget.compressed, budget.limits).add(declared)  # a bomb fails here, before inflating
        spans = _data_spans(raw, zf, infos, label)
        for info in infos:
            yield from _zip_member(raw, info, spans[id(info)], tree)


def _data_spans(raw, zf: zipfile.ZipFile, infos, label: str) -> dict[int, int]:
    """Where each member's data starts; members whose data overlap (a zip-bomb trick) fail."""
    starts = {}
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for n, info in enumerate(ordered):
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL.size)
        if len(header) < _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise _fail(label, info.orig_filename, "has no valid local header")
        fields = _LOCAL.unpack(header)
        name_len, extra_len = fields[9], fields[10]
        local_name = raw.read(name_len)
        central = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        if local_name != central:
            raise _fail(label, info.orig_filename, f"has another name in its local header ({local_name!r})")
        start = info.header_offset + _LOCAL.size + name_len + extra_len
        end = ordered[n + 1].header_offset if n + 1 < len(ordered) else zf.start_dir
        if start + info.compress_size > end:
            raise _fail(label, info.orig_filename, "has data that overlaps the next member (declared sizes are wrong)")
        starts[id(info)] = start
    return starts


def _zip_member(raw, info: zipfile.ZipInfo, start: int, tree: _Tree):
    label, name = tree.label, info.orig_filename
    if "\\" in name:
        raise _fail(label, name, "has a backslash in its name (a Windows path separator)")
    try:
        clean = normalise(name)
    except ValueError as exc:
        raise _fail(label, name, str(exc)) from None
    if info.flag_bits & 0x1:
        raise _fail(label, name, "is encrypted")
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    kind = stat.S_IFMT(mode)
    mtime = calendar.timegm((*info.date_time, 0, 0, 0))
    if name.endswith("/") or kind == stat.S_IFDIR:
        yield clean, lambda path: tree.directory(clean, path, (mode & 0o7777) or 0o755)
    elif kind == stat.S_IFLNK:
        if info.file_size > 4096:  # PATH_MAX: no real link target is longer
            raise _fail(label, name, f"is a symlink with a {info.file_size}-byte target")

        def link(path: str) -> None:
            target = b"".join(_inflate(raw, info, start, label, tree.budget)).decode("utf-8", "surrogateescape")
            tree.symlink(clean, path, target)
        yield clean, link
    elif kind in (0, stat.S_IFREG):
        yield clean, lambda path: tree.file(clean, path, (mode & 0o7777) or 0o644, _inflate(raw, info, start, label, tree.budget), mtime=mtime)
    else:
        raise _fail(label, name, "is a device node, FIFO or socket (from its unix mode); layers hold only files, directories and symlinks")


def _inflate(raw, info: zipfile.ZipInfo, start: int, label: str, budget: _Budget) -> Iterator[bytes]:
    """A member's bytes, checked against its declared size and CRC, and that the stream ends there."""
    name = info.orig_filename
    if info.compress_type == zipfile.ZIP_STORED:
        inflater = None
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        inflater = zlib.decompressobj(-15)  # raw deflate, as zip stores it
    else:
        raise _fail(label, name, f"uses compression method {info.compress_type}; only stored and deflate are supported")
    raw.seek(start)
    left, out, crc = info.compress_size, 0, 0
    try:
        while True:
            if inflater and inflater.unconsumed_tail:
                data = inflater.unconsumed_tail
            elif left > 0:
                data = raw.read(min(CHUNK, left))
                if not data:
                    raise _fail(label, name, "is cut short (truncated archive)")
                left -= len(data)
            elif inflater:
                # All input is in: take what zlib still holds; the stream must end exactly here.
                data, done, inflater = inflater.flush(), inflater, None
                if not done.eof or done.unused_data:
                    raise _fail(label, name, "has compressed data that does not end where its declared size says")
            else:
                break
            # Output is taken in CHUNK pieces (max_length), so a bomb never sits in memory whole.
            piece = inflater.decompress(data, CHUNK) if inflater else data
            out += len(piece)
            if out > info.file_size:
                raise _fail(label, name, f"holds more data than its declared size of {info.file_size} bytes")
            budget.add(len(piece))
            crc = zlib.crc32(piece, crc)
            yield piece
    except zlib.error as exc:
        raise _fail(label, name, f"has damaged compressed data: {exc}") from None
    if out != info.file_size:
        raise _fail(label, name, f"holds {out} bytes, but declares {info.file_size}")
    if crc != info.CRC:
        raise _fail(label, name, "fails its CRC check")
