"""Find paths that two layers of one profile provide with different contents. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from envbox.core.errors import BuildError


@dataclass(frozen=True)
class Conflict:
    path: str
    lower: str  # tool names
    upper: str


def find_conflicts(order: tuple[str, ...], manifests: Mapping[str, Mapping[str, str]]) -> list[Conflict]:
    """order: tools lowest first; manifests: tool -> {path: content id}. Returns every clash."""
    owner: dict[str, tuple[str, str]] = {}
    out = []
    for tool in order:
        for path, content in manifests.get(tool, {}).items():
            seen = owner.get(path)
            if seen and seen[1] != content:
                out.append(Conflict(path, seen[0], tool))
            owner[path] = (tool, content)
    return out


def check(profile, order: tuple[str, ...], labels: Mapping[str, str], manifests: Mapping[str, Mapping[str, str]]) -> None:
    """Raise for the first clash the profile does not settle with `prefer:`."""
    prefer = dict(profile.prefer)
    lines = {t.tool: t.line for t in profile.tools}
    for clash in find_conflicts(order, manifests):
        winner = prefer.get("/" + clash.path) or prefer.get(clash.path)
        if winner == clash.upper:
            continue
        if winner == clash.lower:
            raise BuildError(
                f"{profile.path}: prefer says {clash.lower} wins /{clash.path}, but {clash.upper} is stacked above it",
                f"list {clash.upper} before {clash.lower} under tools: (later tools are stacked higher)",
            )
        raise BuildError(
            f"{profile.path}: /{clash.path} is provided differently by {labels[clash.lower]} "
            f"(line {lines.get(clash.lower, '?')}) and {labels[clash.upper]} (line {lines.get(clash.upper, '?')})",
            f"say which wins, e.g. prefer: {{/{clash.path}: {clash.upper}}}, or drop one of the tools",
        )
