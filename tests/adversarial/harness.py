"""Shared pieces of the adversarial suite: a victim directory, local archive releases."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Victim:
    """A directory beside the target with a file of random bytes; check() proves it untouched."""

    path: Path
    entries: list
    data: bytes
    mode: int
    inode: int

    @classmethod
    def plant(cls, where: Path) -> "Victim":
        where.mkdir(parents=True, exist_ok=True)
        secret = where / "secret"
        data = os.urandom(4096)
        secret.write_bytes(data)
        st = os.stat(secret)
        return cls(where, sorted(os.listdir(where)), data, st.st_mode, st.st_ino)

    def check(self, store: Path | None = None) -> None:
        assert sorted(os.listdir(self.path)) == self.entries, "new entries in the victim directory"
        secret = self.path / "secret"
        st = os.stat(secret)
        assert secret.read_bytes() == self.data and st.st_mode == self.mode and st.st_ino == self.inode
        if store is not None and store.exists():
            for root, _, files in os.walk(store):
                for name in files:
                    p = os.path.join(root, name)
                    if not os.path.islink(p):
                        assert os.stat(p).st_ino != self.inode, f"{p} aliases the victim"


def tarball(members: dict[str, bytes], *, modes: dict[str, int] | None = None) -> bytes:
    """A .tar.gz with regular files (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = (modes or {}).get(name, 0o755)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def archive_release(env, tool: str, version: str, blob: bytes, *, name: str = "tool.tar.gz", links: str = "") -> Path:
    """Write blob beside the env and a user catalog entry that builds it (kind: archive)."""
    path = env.base / f"{tool}-{version}-{name}"
    path.write_bytes(blob)
    os.chmod(path, 0o644)
    sha = hashlib.sha256(blob).hexdigest()
    catalog = Path(env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d"
    catalog.mkdir(parents=True, exist_ok=True)
    (catalog / f"{tool}.yaml").write_text(
        f"tool: {tool}\nreleases:\n  - version: \"{version}\"\n"
        f"    source: {{kind: archive, url: {path}, sha256: {sha}}}\n" + links
    )
    env.give(env.home)
    return path
