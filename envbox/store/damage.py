"""Layers that failed verification: marked (store/damaged/<digest>) from the check that found
them until a later check finds them whole or `envbox repair` removes them; never used between."""

from __future__ import annotations

import os
from pathlib import Path


def marker(store_root: Path, digest: str) -> Path:
    return store_root / "damaged" / digest


def mark(store_root: Path, digest: str) -> None:
    path = marker(store_root, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def clear(store_root: Path, digest: str) -> None:
    try:
        os.unlink(marker(store_root, digest))
    except FileNotFoundError:
        pass


def is_marked(store_root: Path, digest: str) -> bool:
    return os.path.lexists(marker(store_root, digest))


def marked(store_root: Path) -> list[str]:
    try:
        return sorted(os.listdir(store_root / "damaged"))
    except FileNotFoundError:
        return []
