"""Lock files (NAME.lock beside the profile): exact releases, artifact hashes, layer digests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from envbox.core.errors import ProfileError

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedTool:
    version: str
    recipe_key: str
    digest: str
    artifacts: tuple[tuple[str, str], ...]  # (name, sha256)


@dataclass(frozen=True)
class Lock:
    path: Path
    tools: dict  # tool -> LockedTool (read-only by convention)

    def pins(self, tool: str) -> dict[str, str]:
        locked = self.tools.get(tool)
        return dict(locked.artifacts) if locked else {}


def lock_path(profile_path: Path) -> Path:
    stem = profile_path.name.removesuffix(".yaml").removesuffix(".yml")
    return profile_path.with_name(f"{stem}.lock")


LOCK_MAX = 4 << 20  # a lock lists a few hundred artifacts at most


def read_lock(path: Path) -> Lock | None:
    from envbox import fsio

    try:
        data = json.loads(fsio.read_limited(path, limit=LOCK_MAX, follow=True)[0])
    except fsio.FileRefused as exc:
        if exc.missing:
            return None
        raise ProfileError(f"{path}: {exc.why} (a lock file)", "delete it and run 'envbox lock' again") from None
    except ValueError as exc:
        raise ProfileError(f"{path}: not a valid lock file ({exc})", "delete it and run 'envbox lock' again") from None
    try:
        if data.get("version") != LOCK_VERSION:
            raise ValueError(f"unsupported lock version {data.get('version')!r}")
        tools = {
            name: LockedTool(
                version=str(entry["version"]),
                recipe_key=str(entry["recipe_key"]),
                digest=str(entry["digest"]),
                artifacts=tuple((str(a["name"]), str(a["sha256"])) for a in entry.get("artifacts", ())),
            )
            for name, entry in data["tools"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProfileError(f"{path}: not a valid lock file ({exc})", "delete it and run 'envbox lock' again") from None
    return Lock(path, tools)


def render_lock(profile_name: str, entries: dict[str, dict]) -> str:
    """entries: tool -> {version, recipe_key, digest, artifacts: [{name, sha256, ...}]}. Pure."""
    body = {
        "version": LOCK_VERSION,
        "profile": profile_name,
        "tools": {
            tool: {
                "version": e["version"],
                "recipe_key": e["recipe_key"],
                "digest": e["digest"],
                "artifacts": [{"name": a["name"], "sha256": a["sha256"], "url": a.get("url", "")} for a in e["artifacts"]],
            }
            for tool, e in sorted(entries.items())
        },
    }
    return json.dumps(body, indent=2) + "\n"
