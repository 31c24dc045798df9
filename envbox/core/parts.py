"""Optional parts of a catalog release (`parts:` in the catalog, `with:`/`without:` in a
profile): validated when the catalog is read, merged into the release's one recipe when a
profile picks them. Pure."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Callable, Mapping

from envbox.core.errors import CatalogError
from envbox.core import fields

PART_KEYS = ("default", "description", "packages", "skip", "links", "post", "sources", "env")


def select(release: Any, with_parts: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> Any:
    """The release with its default parts, plus with_parts, minus without, merged into one
    recipe: a deb part's packages join the same closure; its links, post steps (before the
    release's own), env and further sources are added. Raises CatalogError for an unknown part."""
    specs = release.part_specs
    for name in (*with_parts, *without):
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise CatalogError(f"{release.tool} {release.version} has no part {name!r} (parts: {known})", f"run 'envbox catalog {release.tool}' to see each release's parts")
    chosen = tuple(sorted((set(release.default_parts()) | set(with_parts)) - set(without)))
    if not chosen:
        return release
    source, links, post, env, extra = dict(release.source), dict(release.links), [], dict(release.env), json.loads(release.extra_sources)
    for name in chosen:
        part = specs[name]
        for key in ("packages", "skip"):
            if part.get(key):
                source[key] = list(dict.fromkeys([*source.get(key, []), *part[key]]))
        links.update(part.get("links", {}))
        post += [s for s in part.get("post", []) if s not in post]
        env.update(part.get("env", {}))
        extra += [s for s in part.get("sources", []) if s not in extra]
    return replace(
        release,
        source_json=json.dumps(source, sort_keys=True),
        links=tuple(sorted(links.items())),
        post=json.dumps(post + [s for s in release.post_steps if s not in post], sort_keys=True),
        env=tuple(sorted(env.items())),
        chosen=chosen,
        extra_sources=json.dumps(extra, sort_keys=True),
    )


def read_parts(parts: Any, source: dict, fail, line: int, source_checks: Mapping[str, Any], what: str, *,
               check_steps: Callable, links: Callable, env: Callable) -> dict:
    """Validate `parts:` (name -> {default, packages, skip, links, post, sources, env}) with
    the catalog's own checks (passed in: the catalog imports this module): a part's links and
    env follow the same rules as a release's (and env as a profile's, core/fields). Pure."""
    if not isinstance(parts, dict):
        raise fail(line, f"{what}: parts must map part names to mappings")
    out = {}
    for name, part in parts.items():
        at = parts.key_lines.get(name, line) if hasattr(parts, "key_lines") else line
        try:
            fields.name(name, "part name")
        except ValueError as exc:
            raise fail(at, f"{what}: {exc}") from None
        if not isinstance(part, dict):
            raise fail(at, f"{what}: part {name} must map to its keys, not {fields.kind_of(part)}")
        for key in part:
            if key not in PART_KEYS:
                raise fail(at, f"{what}: unknown key {key!r} in part {name} (valid: {', '.join(PART_KEYS)})")
        if not isinstance(part.get("default", False), bool):
            raise fail(at, f"{what}: parts.{name}.default must be true or false")
        if ("packages" in part or "skip" in part) and source.get("kind") != "deb":
            raise fail(at, f"{what}: parts.{name}: packages and skip are for deb sources")
        try:
            if "packages" in part or "skip" in part:
                # A part may only skip (its packages then are the release's own).
                source_checks["deb"]({"kind": "deb", "suite": source.get("suite"), "packages": part.get("packages", source.get("packages")),
                                      "skip": part.get("skip", [])})
            check_steps(part.get("post", []))
            sources = part.get("sources", [])
            if not isinstance(sources, list):
                raise ValueError("sources must be a list of source mappings")
            for extra in sources:
                if not isinstance(extra, dict) or extra.get("kind") not in source_checks:
                    raise ValueError(f"each source needs kind: one of {', '.join(sorted(source_checks))}")
                source_checks[extra["kind"]](extra)
        except ValueError as exc:
            raise fail(at, f"{what}: parts.{name}: {exc}") from None
        out[name] = {**{k: v for k, v in part.items() if k not in ("links", "env")},
                     "links": dict(links(part, fail, at)), "env": dict(env(part, fail, at))}
    return out
