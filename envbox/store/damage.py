"""Layers that failed verification: marked (store/damaged/<digest>) from the check that found
them until a later check finds them whole or `envbox repair` removes them; never used between."""

from __future__ import annotations

import os
from pathlib import Path

from envbox.fsio import listdir_sorted, unlink_quiet


def marker(store_root: Path, digest: str) -> Path:
    return store_root / "damaged" / digest


def mark(store_root: Path, digest: str) -> None:
    path = marker(store_root, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def clear(store_root: Path, digest: str) -> None:
    unlink_quiet(marker(store_root, digest))


def is_marked(store_root: Path, digest: str) -> bool:
    return os.path.lexists(marker(store_root, digest))


def marked(store_root: Path) -> list[str]:
    return listdir_sorted(store_root / "damaged")
