"""Downloads into the sha256-addressed cache (https or a local file), verified. Network and files."""

from __future__ import annotations

import http.client
import hashlib
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envbox.core.errors import BuildError
from envbox.sources.specs import LOOPBACK_SWITCH, _loopback_allowed, check_sha256, check_url, parse_integrity, url_name  # noqa: F401  (re-exported)

MAX_BYTES = 2 << 30  # no single artifact envbox ships comes near 2 GiB (zig's wheel is 101 MB)
TIMEOUT = 30.0  # seconds for connecting and for each read: a stalled server fails, a slow one does not
DEADLINE = 1800.0  # seconds for a whole download
PROGRESS_INTERVAL = 0.3  # seconds between progress reports
CHUNK = 1 << 20
USER_AGENT = "envbox/0.1 (+https://github.com/envbox)"

Progress = Callable[[int, "int | None"], None]  # (bytes so far, total or None)


@dataclass(frozen=True)
class Download:
    """A verified file in the cache, and where it came from."""

    path: Path  # downloads/sha256/<hex>
    sha256: str
    size: int
    url: str  # "" when the cache holds the file but not its origin
    name: str


def line_progress(label: str, emit: Callable[[str], None]) -> Progress:
    """A byte-progress callback: to the display's byte counter where it has one (see
    envbox.sources), otherwise one human line per report."""
    counter = getattr(emit, "bytes", None)
    if counter is not None:
        return lambda done, total: counter(label, done, total)

    def report(done: int, total: int | None) -> None:
        of = f" of {total / 1e6:.1f}" if total else ""
        emit(f"downloading {label}: {done / 1e6:.1f}{of} MB")

    return report


# ---- the cache -------------------------------------------------------------------------------


def cached(downloads: Path, *, sha256: str | None = None, integrity: str | None = None) -> Download | None:
    """The cached file with this digest, re-verified, without network; None when absent."""
    if sha256:
        path = downloads / "sha256" / sha256
    elif integrity:
        algo, digest = parse_integrity(integrity)
        path = downloads / algo / digest
    else:
        return None
    from envbox import fsio

    try:
        fd, _ = fsio.open_regular(path)
    except fsio.FileRefused as exc:
        if not exc.missing:  # a link, FIFO or device where a download should be: not ours
            fsio.unlink_quiet(path)
        return None
    with os.fdopen(fd, "rb") as f:
        hashes = _Hashes(sha512=bool(integrity) and parse_integrity(integrity)[0] == "sha512")
        while chunk := f.read(CHUNK):
            hashes.update(chunk)
    if (sha256 and hashes.sha256.hexdigest() != sha256) or (integrity and not hashes.matches(integrity)):
        # A damaged cache entry (disk error, a killed copy by hand): drop it and download again.
        path.unlink(missing_ok=True)
        return None
    digest = hashes.sha256.hexdigest()
    origin = _read_origin(downloads, digest)
    main = downloads / "sha256" / digest
    return Download(main if main.exists() else path, digest, hashes.size, origin.get("url", ""), origin.get("name", ""))


def fetch(
    url: str,
    downloads: Path,
    *,
    name: str | None = None,
    sha256: str | None = None,
    integrity: str | None = None,
    progress: Progress | None = None,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT,
) -> Download:
    """url (https or an absolute path) as a verified file in downloads/sha256/<hex>.

    A file already cached under a known digest is reused without touching the network. The
    download goes to a temporary file that is renamed into place only after it verified, so
    the cache never holds a partial or wrong file.
    """
    try:
        check_url(url)
    except ValueError as exc:
        raise BuildError(str(exc), "use an https:// URL or an absolute path") from None
    name = name or url_name(url)
    hit = cached(downloads, sha256=sha256, integrity=integrity)
    if hit:
        return Download(hit.path, hit.sha256, hit.size, hit.url or url, hit.name or name)
    tmpdir = downloads / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmpdir, prefix="dl-")
    try:
        with os.fdopen(fd, "wb") as out:
            hashes = _copy_into(url, out, progress=progress, max_bytes=max_bytes, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())
        digest = hashes.sha256.hexdigest()
        if sha256 and digest != sha256:
            raise BuildError(
                f"{url}: sha256 is {digest}, expected {sha256}",
                "the file changed upstream or was tampered with; check the source before changing the pin",
            )
        if integrity and not hashes.matches(integrity):
            raise BuildError(
                f"{url}: integrity does not match {integrity} (sha256 of what arrived: {digest})",
                "the file changed upstream or was tampered with; check the source before changing the pin",
            )
        final = downloads / "sha256" / digest
        final.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o644)
        os.rename(tmp, final)
        _index_sha512(downloads, final, hashes.sha512.hexdigest())
        _write_origin(downloads, digest, url, name)
        return Download(final, digest, hashes.size, url, name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_json(url: str, *, missing_ok: bool = False, max_bytes: int = 64 << 20, timeout: float = TIMEOUT) -> object:
    """A JSON document from an index (PyPI, npm); never cached; None for HTTP 404 if missing_ok. Network."""
    import io

    try:
        check_url(url)
    except ValueError as exc:
        raise BuildError(str(exc), "use an https:// index URL") from None
    buf = io.BytesIO()
    try:
        _copy_into(url, buf, progress=None, max_bytes=max_bytes, timeout=timeout)
    except _NotFound:
        if missing_ok:
            return None
        raise BuildError(f"{url}: not found (HTTP 404)", "check the name and version") from None
    try:
        return json.loads(buf.getvalue())
    except ValueError:
        raise BuildError(f"{url} did not return JSON", "the index may be down or the URL wrong") from None


class _NotFound(BuildError):
    """HTTP 404: an index lookup may try another URL."""


class _Hashes:
    def __init__(self, *, sha512: bool = True) -> None:
        self.sha256, self.size = hashlib.sha256(), 0
        self.sha512 = hashlib.sha512() if sha512 else None

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.sha512:
            self.sha512.update(chunk)
        self.size += len(chunk)

    def matches(self, integrity: str) -> bool:
        algo, digest = parse_integrity(integrity)
        return getattr(self, algo).hexdigest() == digest


def _copy_into(url: str, out, *, progress: Progress | None, max_bytes: int, timeout: float) -> _Hashes:
    if os.path.isabs(url):
        from envbox import fsio

        try:
            # A catalog may name a symlink to the archive, but never a FIFO or a device.
            fd, st = fsio.open_regular(url, follow=True)
        except fsio.FileRefused as exc:
            raise BuildError(f"cannot read {url}: {exc.why}", "check the path in the catalog") from None
        with os.fdopen(fd, "rb") as src:
            return _pump(src, out, url, st.st_size, progress=progress, max_bytes=max_bytes)
    opener = urllib.request.build_opener(_HttpsOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            hashes = _pump(response, out, url, total, progress=progress, max_bytes=max_bytes)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise _NotFound(f"download of {url} failed: HTTP 404 Not Found", "check the URL and version in the catalog") from None
        raise BuildError(f"download of {url} failed: HTTP {exc.code} {exc.reason}", "check the URL and version in the catalog") from None
    except urllib.error.URLError as exc:
        raise BuildError(f"download of {url} failed: {exc.reason}", "check the network connection and that the host is reachable") from None
    except (OSError, http.client.HTTPException) as exc:
        # Timeouts, resets and TLS errors while reading the body arrive unwrapped.
        raise BuildError(f"download of {url} failed: {exc or type(exc).__name__}", "check the network connection; try again") from None
    if total is not None and hashes.size != total:
        raise BuildError(f"download of {url} was cut short: {hashes.size} of {total} bytes", "try again")
    return hashes


def _pump(src, out, url: str, total: int | None, *, progress: Progress | None, max_bytes: int) -> _Hashes:
    if total is not None and total > max_bytes:
        raise BuildError(f"{url} is {total} bytes, more than the {max_bytes}-byte limit", "check the URL; is it the right file?")
    hashes = _Hashes()
    deadline = time.monotonic() + DEADLINE
    last = 0.0
    while chunk := src.read(CHUNK):
        hashes.update(chunk)
        if hashes.size > max_bytes:
            raise BuildError(f"{url} is more than the {max_bytes}-byte limit", "check the URL; is it the right file?")
        out.write(chunk)
        now = time.monotonic()
        if now > deadline:
            raise BuildError(f"download of {url} took longer than {DEADLINE:.0f} s", "check the network connection; try again")
        if progress and now - last >= PROGRESS_INTERVAL:
            progress(hashes.size, total)
            last = now
    if progress:
        progress(hashes.size, total)
    return hashes


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https: a redirect must not downgrade to http, file: or ftp:."""

    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        parts = urllib.parse.urlsplit(newurl)
        if parts.scheme != "https" and not _loopback_allowed(parts):
            raise BuildError(f"{req.full_url} redirects to {newurl}, which is not https", "refusing to follow; check the URL in the catalog")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _index_sha512(downloads: Path, final: Path, sha512: str) -> None:
    """A second name for the file under its sha512, so npm integrity pins find it offline."""
    index = downloads / "sha512"
    index.mkdir(exist_ok=True)
    tmp = index / f".{sha512}.{_unique()}.tmp"
    tmp.unlink(missing_ok=True)
    os.link(final, tmp)
    os.rename(tmp, index / sha512)  # atomic even when another builder got there first


def _write_origin(downloads: Path, digest: str, url: str, name: str) -> None:
    origin = downloads / "origin"
    origin.mkdir(exist_ok=True)
    tmp = origin / f".{digest}.{_unique()}.tmp"
    tmp.write_text(json.dumps({"url": url, "name": name}))
    os.rename(tmp, origin / f"{digest}.json")


def _unique() -> str:
    # Builders download in parallel threads (deb) and processes: temp names must not collide.
    return f"{os.getpid()}.{threading.get_ident()}"


def _read_origin(downloads: Path, digest: str) -> dict:
    from envbox import fsio

    try:
        data = json.loads(fsio.read_quiet(downloads / "origin" / f"{digest}.json", limit=64 << 10) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


