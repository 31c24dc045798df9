"""Trust records for project files: keyed to the absolute path and the sha256 of its bytes."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from envbox.core.digests import path_key, sha256_hex, stat_signature
from envbox.core.errors import TrustError
from envbox.core.yamlstrict import MAX_BYTES
from envbox.fsio import FileRefused, read_limited


@dataclass(frozen=True)
class ProjectFile:
    path: Path  # absolute
    data: bytes  # the exact bytes that are hashed, and then parsed
    sha256: str
    signature: tuple  # digests.stat_signature of the open file


def read_project_file(path: Path, *, uid: int) -> ProjectFile:
    """Read a project file the safe way: no symlinks, owned by the caller, not writable by others."""
    path = Path(os.path.abspath(path))
    try:
        data, st = read_limited(path, limit=MAX_BYTES)
    except FileRefused as exc:
        hint = "project files must be regular files you own" if not exc.missing else "check the path"
        raise TrustError(f"cannot read {path}: it {exc.why}", hint) from None
    if st.st_uid != uid:
        raise TrustError(f"{path} is owned by uid {st.st_uid}, not by you", "envbox only uses project files you own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TrustError(f"{path} is writable by group or others", f"chmod go-w {path}")
    return ProjectFile(path, data, sha256_hex(data), tuple(stat_signature(st)))


def record_path(trust_dir: Path, path: Path) -> Path:
    return trust_dir / (path_key(path) + ".json")


RECORD_MAX = 64 << 10  # a record is one path and one digest


def is_trusted(trust_dir: Path, pf: ProjectFile) -> bool:
    """Only a record in a directory that is this user's own, read without following links."""
    from envbox import fsio

    if fsio.private_dir_problem(trust_dir):
        return False
    data = fsio.read_quiet(record_path(trust_dir, pf.path), limit=RECORD_MAX)
    try:
        record = json.loads(data) if data is not None else None
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("path") == str(pf.path) and record.get("sha256") == pf.sha256


def require_trusted(trust_dir: Path, pf: ProjectFile) -> None:
    from envbox import fsio

    problem = fsio.private_dir_problem(trust_dir)
    if problem:
        raise TrustError(f"the trust records cannot be trusted: {problem}", f"remove {trust_dir} if you did not make it, then trust the project again")
    if not is_trusted(trust_dir, pf):
        raise TrustError(
            f"{pf.path} is not trusted (new, edited or moved since it was trusted)",
            f"read it, then run 'envbox trust' in {pf.path.parent} to allow it",
        )


def record(trust_dir: Path, pf: ProjectFile) -> Path:
    trust_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from envbox.fsio import write_atomic

    target = record_path(trust_dir, pf.path)
    write_atomic(target, json.dumps({"path": str(pf.path), "sha256": pf.sha256}).encode(), mode=0o600)
    return target


def revoke(trust_dir: Path, path: Path) -> bool:
    try:
        os.unlink(record_path(trust_dir, Path(os.path.abspath(path))))
        return True
    except FileNotFoundError:
        return False
