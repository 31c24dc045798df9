"""Where profiles live (bundled, system, user) and which one a name refers to. Reads directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from envbox.core.errors import EXIT_USAGE, ProfileError
from envbox.core.names import NAME_RULE, describe_bad_name, is_valid_name
from envbox.config.paths import Paths

# Highest precedence first: a user profile replaces a system one of the same name, which
# replaces a bundled one.
SCOPES = ("user", "system", "bundled")


@dataclass(frozen=True)
class ProfileRef:
    name: str
    path: Path
    scope: str


def scope_dirs(paths: Paths) -> tuple[tuple[str, Path], ...]:
    return (
        ("user", paths.user_profiles),
        ("system", paths.system_profiles),
        ("bundled", paths.bundled_profiles),
    )


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".yaml" and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def all_profiles(paths: Paths) -> list[tuple[ProfileRef, ProfileRef | None]]:
    """Every profile file envbox sees, with the higher-scope profile that shadows it (if any)."""
    winners: dict[str, ProfileRef] = {}
    out = []
    for scope, directory in scope_dirs(paths):
        for path in _entries(directory):
            ref = ProfileRef(path.stem, path, scope)
            shadow = winners.get(ref.name)
            if shadow is None:
                winners[ref.name] = ref
            out.append((ref, shadow))
    return out


def find_profile(paths: Paths, name: str) -> ProfileRef:
    if not is_valid_name(name):
        raise ProfileError(f"bad profile name {describe_bad_name(name)}", f"names use {NAME_RULE}", exit_code=EXIT_USAGE)
    for scope, directory in scope_dirs(paths):
        path = directory / f"{name}.yaml"
        if path.exists() or path.is_symlink():
            return ProfileRef(name, path, scope)
    known = sorted({ref.name for ref, _ in all_profiles(paths)})
    hint = "run 'envbox list' to see the profiles envbox knows"
    if known:
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? ({hint})" if close else hint
    raise ProfileError(f"no profile named {name!r}", hint)
