"""Fingerprints of files and paths: sha256 without OpenSSL, path keys, stat signatures. Pure.

Stdlib only and cheap to import: the fast launch path compares stat signatures, and `import
hashlib` initialises OpenSSL (~12 ms here), which `envbox list` and `plan` should not pay for a
few small files.
"""

from __future__ import annotations

import os


def sha256_hex(data: bytes) -> str:
    """The sha256 of data in hex, from CPython's own implementation (plenty for small files)."""
    try:
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


def path_key(path: str | os.PathLike) -> str:
    """A file name for records about a path (trust records, launched projects, cached plans):
    the sha256 of the path's bytes, so any path fits and none can escape the directory."""
    return sha256_hex(os.fsencode(os.fspath(path)))


def stat_signature(st: os.stat_result) -> list:
    """What must not change for a cached result about a file to stay valid. ctime moves on every
    write, chmod or chown, and cannot be set back by the file's owner (unlike mtime)."""
    return [st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, st.st_uid]


def signature(path: str) -> list | None:
    """The stat signature of path (following links, as opening it would), or None if absent."""
    try:
        return stat_signature(os.stat(path))
    except OSError:
        return None
