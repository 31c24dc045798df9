"""The content-addressed layer store: atomic builds under a lock, lookup, verify, gc."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envbox.store import treedigest
from envbox.fsio import listdir_sorted, pid_alive, unlink_quiet, write_text_atomic
from envbox.core.errors import BuildError, EnvboxError
from envbox.core.limits import format_size
from envbox.core.names import printable

LOCK_TIMEOUT = 600.0  # seconds a builder waits for another builder of the same layer (ENVBOX_LOCK_TIMEOUT)


@dataclass(frozen=True)
class LayerInfo:
    digest: str
    path: Path  # the layer root: usr/..., etc/...
    recipe_key: str
    label: str  # "python 2.7.18 (deb bullseye)"
    tool: str
    version: str
    size: int
    files: int
    artifacts: tuple[dict, ...] = ()
    built_at: float = 0.0

    def to_json(self) -> dict:
        return {
            "digest": self.digest,
            "path": str(self.path),
            "recipe_key": self.recipe_key,
            "label": self.label,
            "tool": self.tool,
            "version": self.version,
            "size": self.size,
            "files": self.files,
            "artifacts": list(self.artifacts),
            "built_at": self.built_at,
        }

    @classmethod
    def from_json(cls, data: dict, store: "Store") -> "LayerInfo":
        digest = data["digest"]
        if not is_digest(digest):
            raise ValueError(f"bad digest {digest!r}")
        return cls(
            digest=digest,
            path=store.layer_dir(digest),
            recipe_key=data["recipe_key"],
            label=data.get("label", ""),
            tool=data.get("tool", ""),
            version=data.get("version", ""),
            size=int(data.get("size", 0)),
            files=int(data.get("files", 0)),
            artifacts=tuple(data.get("artifacts", ())),
            built_at=float(data.get("built_at", 0.0)),
        )


def is_digest(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class Recipe:
    """What to build: a key that names it before it exists, and a function that fills a root."""

    key: str
    label: str
    tool: str
    version: str
    links: tuple[tuple[str, str], ...]
    fill: Callable[[Path, Path], tuple]  # (root, work) -> artifacts; may be a no-op


def _make_dirs(path: Path) -> None:
    """mkdir -p with mode 0755 at every level it makes. pathlib's parents=True makes the
    parents 0777 & ~umask, so under a umask of 002 (user private groups, e.g. a Debian 13 login)
    the store came out group-writable and the next command refused it as not private."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            pass


class Store:
    """store/layers/<digest>/ (immutable roots), store/index/<recipe>.json, store/tmp, store/locks.

    How builders, launches and gc coordinate (gc must never remove a layer someone is about to
    use, whatever runs at the same time):
    - locks/store.lock: gc holds it exclusively while it lists the store, computes what is
      referenced and removes; a builder holds it shared from just before it renames a new layer
      into place until the layer's index entry is written (a referenced layer is then visible to
      gc's reference scan, which runs after gc's listing).
    - locks/use-<digest>: held shared by whoever uses a layer (a builder from before the rename,
      a launch for the app's lifetime; `pin`); gc removes a layer only while it holds this lock
      exclusively, so a pinned layer is never removed.
    """

    def __init__(self, root: Path):
        from envbox.fsio import private_dir_problem

        # Layers, index entries, manifests and locks are trusted as envbox's own: only in a
        # directory that is this user's and nobody else can write.
        problem = private_dir_problem(root)
        if problem:
            raise EnvboxError(f"the store cannot be used: {problem}", "remove or fix it (it must be yours and writable only by you), or set ENVBOX_DATA_DIR")
        self.root = root

    def layer_dir(self, digest: str) -> Path:
        return self.root / "layers" / digest

    def _index_file(self, key: str) -> Path:
        return self.root / "index" / f"{key}.json"

    def lookup(self, key: str) -> LayerInfo | None:
        try:
            data = json.loads(_read_meta(self._index_file(key), INDEX_MAX))
            info = LayerInfo.from_json(data, self)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        return info if info.path.is_dir() else None

    def ensure(self, recipe: Recipe, *, progress: Callable[[str], None] = lambda m: None) -> LayerInfo:
        """The layer for recipe, building it once (other builders wait on the lock, then reuse).

        The layer returned is pinned for the rest of this process (see `pin`): gc leaves it alone."""
        found = self.lookup(recipe.key)
        if found and self.pin(found.digest):
            return found
        for sub in ("layers", "index", "tmp", "locks"):
            _make_dirs(self.root / sub)
        with _Lock(self.root / "locks" / f"{recipe.key}.lock", what=recipe.label):
            found = self.lookup(recipe.key)
            if found and self.pin(found.digest):
                return found
            self.clean_tmp()
            return self._build(recipe, progress)

    def pin(self, digest: str) -> bool:
        """Hold a shared lock on the layer's use-lock until this process exits (gc skips a
        layer while anyone holds it); True when the layer is (still) in the store.

        Waits while a gc is removing that very layer; then the answer is False and the caller
        builds it again."""
        if digest in _PINS:
            return self.layer_dir(digest).is_dir()
        try:
            _make_dirs(self.root / "locks")
            fd = hold_use_lock(self.root / "locks" / f"use-{digest}", what=f"layer {digest[:16]}")
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            # A store this process cannot write (a launch inside a launch sees it read-only):
            # nobody here can remove anything either; use the layer unpinned.
            return self.layer_dir(digest).is_dir()
        _PINS[digest] = fd
        return self.layer_dir(digest).is_dir()

    def gc_barrier(self, *, exclusive: bool) -> "_Lock":
        """locks/store.lock: exclusive for gc, shared for a builder putting a layer in place."""
        _make_dirs(self.root / "locks")
        return _Lock(self.root / "locks" / "store.lock", what="the store (envbox gc)", shared=not exclusive)

    def _build(self, recipe: Recipe, progress: Callable[[str], None]) -> LayerInfo:
        tmp = self.root / "tmp" / f"{recipe.key[:16]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        root, work = tmp / "root", tmp / "work"
        root.mkdir(parents=True)
        # Only the builder may reach the tree while it is built: as root, a layer's own programs
        # run as nobody on a tree lent to nobody (postbuild), and no other nobody may get in.
        os.chmod(tmp, 0o700)
        work.mkdir()
        try:
            progress(f"building {recipe.label}")
            started = time.monotonic()
            crash_point("build")
            artifacts = recipe.fill(root, work)
            _make_links(root, recipe.links)
            crash_point("extract")
            _freeze(root)
            manifest = treedigest.scan(root, sanitise=True)
            digest = manifest.digest()
            final = self.layer_dir(digest)
            crash_point("rename")
            # From the rename until the index entry exists, gc could see a layer no profile
            # references yet: hold gc off, and pin the layer for this process's later use.
            with self.gc_barrier(exclusive=False):
                self.pin(digest)
                try:
                    os.rename(root, final)
                    # Only now: moving a directory to a new parent needs write access to it.
                    os.chmod(final, 0o555)
                except OSError as exc:
                    # Another recipe produced identical bytes: the existing layer is the same.
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                return self._record(recipe, digest, final, manifest, artifacts, progress, started)
        finally:
            _thaw(tmp)
            shutil.rmtree(tmp, ignore_errors=True)

    def _record(self, recipe: Recipe, digest: str, final: Path, manifest, artifacts, progress, started: float) -> LayerInfo:
        info = LayerInfo(
            digest=digest,
            path=final,
            recipe_key=recipe.key,
            label=recipe.label,
            tool=recipe.tool,
            version=recipe.version,
            size=manifest.size(),
            files=len(manifest.entries),
            artifacts=tuple(a.to_json() if hasattr(a, "to_json") else a for a in artifacts),
            built_at=time.time(),
        )
        self._write_meta(digest, manifest)
        crash_point("index")
        write_text_atomic(self._index_file(recipe.key), json.dumps(info.to_json(), indent=1))
        self._log(f"built {digest} {recipe.key} {recipe.label}")
        progress(f"built {recipe.label}: {format_size(info.size)}, {info.files} files, {time.monotonic() - started:.1f} s")
        return info

    def _log(self, line: str) -> None:
        """One line per completed build, for users ('when was this built?') and tests."""
        fd = os.open(self.root / "builds.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} {line}\n")

    def _write_meta(self, digest: str, manifest: treedigest.Manifest) -> None:
        meta = self.root / "meta"
        meta.mkdir(0o755, exist_ok=True)  # not group-writable under a umask of 002
        write_text_atomic(meta / f"{digest}.manifest", "".join(e.line() + "\n" for e in manifest.entries))

    def manifest(self, digest: str) -> dict[str, str]:
        """path -> content digest of the non-directory entries of a stored layer."""
        out = {}
        try:
            text = _read_meta(self.root / "meta" / f"{digest}.manifest", MANIFEST_MAX).decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return {e.path: e.digest for e in treedigest.scan(self.layer_dir(digest)).entries if e.kind != "d"}
        for line in text.splitlines():
            kind, _mode, _size, content, path = line.split(" ", 4)
            if kind != "d":
                out[path] = f"{kind}:{content}"
        return out

    def clean_tmp(self) -> None:
        """Remove builds and gc leftovers of crashed processes (their pid is gone)."""
        tmp = self.root / "tmp"
        for entry in listdir_sorted(tmp):
            pid = entry.rsplit("-", 1)[-1]
            if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
                _thaw(tmp / entry)
                shutil.rmtree(tmp / entry, ignore_errors=True)

    def index(self) -> list[LayerInfo]:
        out = []
        for name in listdir_sorted(self.root / "index"):
            if name.endswith(".json"):
                info = self.lookup(name[:-5])
                if info:
                    out.append(info)
        return out


INDEX_MAX = 4 << 20  # an index entry: one layer's metadata and artifacts
MANIFEST_MAX = 256 << 20  # one line per file of a layer


def _read_meta(path: Path, limit: int) -> bytes:
    """A store metadata file: never through a link, a FIFO or a device, at most limit bytes.
    FileNotFoundError when absent; ValueError when it is not a file envbox could have written."""
    from envbox import fsio

    try:
        return fsio.read_limited(path, limit=limit)[0]
    except fsio.FileRefused as exc:
        if exc.missing:
            raise FileNotFoundError(str(path)) from None
        raise ValueError(f"{path}: {exc.why}") from None


def _make_links(root: Path, links: tuple[tuple[str, str], ...]) -> None:
    for rel, target in links:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            if path.is_dir() and not path.is_symlink():
                raise BuildError(f"link {rel} would replace a directory in the layer")
            path.unlink()
        os.symlink(target, path)


def _freeze(root: Path) -> None:
    """Drop write bits below root so a stored layer is not edited by accident."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.lstat(p).st_mode & 0o7555)
        if dirpath != str(root):
            os.chmod(dirpath, os.lstat(dirpath).st_mode & 0o7555)


def _thaw(root: Path) -> None:
    """Give back owner write bits on directories so a tree can be removed. Never follows a
    symlink (os.walk does not descend into them; the root itself is checked)."""
    if root.is_symlink() or not root.is_dir():
        return
    for dirpath, dirnames, _ in os.walk(root):
        try:
            st = os.lstat(dirpath)
            if not os.path.islink(dirpath):
                os.chmod(dirpath, (st.st_mode | 0o700) & 0o7777, follow_symlinks=False)
        except (OSError, NotImplementedError):
            continue


def crash_point(step: str) -> None:
    """Stop dead at a named step when ENVBOX_CRASH_AT names it (tests SIGKILL us there)."""
    if os.environ.get("ENVBOX_CRASH_AT") == step:
        os.kill(os.getpid(), 9)


def _lock_timeout() -> float:
    try:
        return float(os.environ.get("ENVBOX_LOCK_TIMEOUT", LOCK_TIMEOUT))
    except ValueError:
        return LOCK_TIMEOUT


def _flock_waiting(fd: int, op: int, timeout: float) -> bool:
    """flock(fd, op), polling until timeout; False when it timed out."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class _Lock:
    """An exclusive (or shared) flock on a file, with a timeout that names the holder."""

    def __init__(self, path: Path, *, what: str, timeout: float | None = None, shared: bool = False):
        self.path, self.what, self.shared = path, what, shared
        self.timeout = _lock_timeout() if timeout is None else timeout
        self.fd = -1

    def __enter__(self) -> "_Lock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        if not _flock_waiting(self.fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX, self.timeout):
            holder = printable(os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown")
            os.close(self.fd)
            doing = "for" if self.shared else "for another build of"
            raise EnvboxError(
                f"timed out after {self.timeout:.0f} s waiting {doing} {self.what} (held by pid {holder})",
                "if that process is stuck, kill it; the lock is released when it exits",
            )
        if not self.shared:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # closing drops the flock; a killed holder's lock goes with its fds


# digest -> fd of a shared use-lock this process holds until it exits (Store.pin).
_PINS: dict[str, int] = {}


def hold_use_lock(path: Path, *, what: str) -> int:
    """A shared flock on a layer's use-lock file, on the file that is at path *now*: gc
    unlinks the file of a layer it removed, and a lock on that old inode would protect
    nothing (a later gc locks the new file), so the inode is checked after locking."""
    timeout = _lock_timeout()
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        if not _flock_waiting(fd, fcntl.LOCK_SH, timeout):
            os.close(fd)
            raise EnvboxError(f"timed out after {timeout:.0f} s waiting for 'envbox gc' to finish with {what}", "if that gc is stuck, kill it")
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


# ---- maintenance: verify and gc --------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    what: str  # a layer digest or an index file name
    message: str


def verify(store: Store) -> list[Problem]:
    """Recompute every stored layer's digest; check every index entry. Reads everything."""
    problems = []
    layers = store.root / "layers"
    for name in listdir_sorted(layers):
        path = layers / name
        if not is_digest(name):
            problems.append(Problem(name, "not a layer (the name is not a sha256 digest)"))
            continue
        if path.is_symlink() or not path.is_dir():
            problems.append(Problem(name, "is not a directory"))
            continue
        try:
            actual = treedigest.scan(path).digest()
        except (OSError, BuildError) as exc:
            problems.append(Problem(name, f"cannot be read: {exc}"))
            continue
        if actual != name:
            problems.append(Problem(name, f"content changed: its files now hash to {actual[:16]}…"))
    for name in listdir_sorted(store.root / "index"):
        try:
            data = json.loads(_read_meta(store.root / "index" / name, INDEX_MAX))
            info = LayerInfo.from_json(data, store)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            problems.append(Problem(name, f"bad index entry: {exc}"))
            continue
        if not info.path.is_dir():
            problems.append(Problem(name, f"index entry points at missing layer {info.digest[:16]}…"))
    return problems


def gc(store: Store, referenced: Callable[[], set[str]]) -> tuple[list[str], list[str], set[str]]:
    """Remove layers nothing references and that nobody holds (a running launch, a builder).

    Returns (removed, kept_busy, referenced). The whole run holds the store lock exclusively,
    and `referenced()` (the digests profiles, lock files and trusted projects use) is asked
    only after the store was listed: a layer put in place by a builder is either not listed,
    or already indexed (so a profile's reference to it is seen), or pinned. Per layer: its
    index entries go first (a crash then leaves an unindexed but whole layer, which the next gc
    removes), then the layer is renamed into tmp/ (it disappears at once, whole) and deleted;
    an interrupted delete is finished by the next build's or gc's clean-up of tmp/.
    """
    removed, busy = [], []
    layers = store.root / "layers"
    _make_dirs(store.root / "tmp")
    _make_dirs(store.root / "locks")
    with store.gc_barrier(exclusive=True):
        listed = listdir_sorted(layers)
        indexed = _index_digests(store)
        keep = set(referenced())
        _gc_remove(store, listed, indexed, keep, removed, busy)
        store.clean_tmp()
    return removed, busy, keep


def _gc_remove(store: Store, listed: list[str], indexed: dict, keep: set[str], removed: list, busy: list) -> None:
    layers = store.root / "layers"
    for name in listed:
        if not is_digest(name) or name in keep:
            continue
        lock = os.open(store.root / "locks" / f"use-{name}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(name)
                continue
            for index_file in indexed.get(name, ()):
                unlink_quiet(index_file)
            if (layers / name).is_symlink() or not (layers / name).is_dir():
                unlink_quiet(layers / name)  # not a layer envbox made: drop the entry itself only
                continue
            doomed = store.root / "tmp" / f"gc-{name[:16]}-{os.getpid()}"
            # Moving a directory to another parent needs write access to it (its '..' entry
            # changes); stored layers are read-only, and without root that is enforced.
            os.chmod(layers / name, 0o755)
            os.rename(layers / name, doomed)
            crash_point("gc")
            _thaw(doomed)
            shutil.rmtree(doomed)
            unlink_quiet(store.root / "meta" / f"{name}.manifest")
            unlink_quiet(store.root / "locks" / f"use-{name}")
            removed.append(name)
        finally:
            os.close(lock)
    for digest, files in _index_digests(store).items():  # entries whose layer is gone
        if digest not in keep and not (layers / digest).is_dir():
            for index_file in files:
                unlink_quiet(index_file)


def _index_digests(store: Store) -> dict[str, list[Path]]:
    """digest -> the index files naming it (entries that cannot be read map to '')."""
    out: dict[str, list[Path]] = {}
    for name in listdir_sorted(store.root / "index"):
        path = store.root / "index" / name
        try:
            digest = json.loads(_read_meta(path, INDEX_MAX)).get("digest")
        except (ValueError, OSError, AttributeError):
            digest = ""
        out.setdefault(digest if isinstance(digest, str) else "", []).append(path)
    return out


