"""Source kind "archive": a tar or zip file by https URL or absolute path, sha256-pinned. Network and files.

    source: {kind: archive, url: https://example.org/tool-1.2.tar.xz, sha256: <hex>,
             strip_components: 1, map: {"bin/": "usr/bin/"}, format: tar.xz}

Also holds the checks the wheel and npm kinds share (keys, maps, pins, layer tops).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from envbox.sources import extract as ex
from envbox.sources import fetch
from envbox.core.errors import BuildError
from envbox.sources import Artifact, BuildContext

KIND = "archive"
KEYS = ("kind", "url", "sha256", "strip_components", "map", "format")
LAYER_TOPS = ("usr", "etc", "opt")  # what an overlay layer may hold (plan.OVERLAY_TARGETS)


def check(spec: Mapping[str, Any]) -> None:
    check_keys(spec, KEYS, ("url", "sha256"))
    fetch.check_url(spec["url"])
    fetch.check_sha256(spec["sha256"])
    strip = spec.get("strip_components", 0)
    if not isinstance(strip, int) or isinstance(strip, bool) or not 0 <= strip <= 16:
        raise ValueError(f"strip_components must be a whole number from 0 to 16, not {strip!r}")
    if "map" in spec:
        check_layer_map(spec["map"])
    if "format" in spec and spec["format"] not in ex.FORMATS:
        raise ValueError(f"format must be one of {', '.join(ex.FORMATS)}, not {spec['format']!r}")


def build(spec: Mapping[str, Any], ctx: BuildContext) -> tuple[Artifact, ...]:
    url = spec["url"]
    name = fetch.url_name(url)
    sha256 = expected_sha256(name, spec["sha256"], ctx.pins)
    got = fetch.fetch(url, ctx.downloads, name=name, sha256=sha256, progress=fetch.line_progress(name, ctx.progress))
    ctx.progress(f"extracting {name}")
    ex.extract(
        got.path,
        ctx.root,
        fmt=spec.get("format"),
        strip_components=spec.get("strip_components", 0),
        mapping=spec.get("map"),
        label=name,
    )
    check_tops(ctx.root, name)
    return (Artifact(name, url, got.sha256, got.size),)


# ---- shared with the wheel and npm kinds -----------------------------------------------------


def check_keys(spec: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str]) -> None:
    """Unknown or missing keys in a source spec -> ValueError naming them. Pure."""
    allowed = tuple(allowed)
    for key in spec:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} in source (valid: {', '.join(allowed)})")
    for key in required:
        if key not in spec:
            raise ValueError(f"source needs {key!r}")


def check_layer_map(mapping: object) -> None:
    """A valid map whose every destination lies under usr/, etc/ or opt/. Pure."""
    for target in ex.check_map(mapping).values():
        if target.split("/")[0] not in LAYER_TOPS:
            raise ValueError(f"map destination {target!r} must lie under usr/, etc/ or opt/")


def expected_sha256(name: str, spec_sha256: str | None, pins: Mapping[str, str]) -> str | None:
    """The digest to demand: the catalog's, checked against a lock file's pin for the same file."""
    pinned = pins.get(name)
    if pinned and spec_sha256 and pinned != spec_sha256:
        raise BuildError(
            f"{name}: the lock file pins sha256 {pinned}, but the catalog says {spec_sha256}",
            "the catalog entry changed since the lock was written; review it, then run 'envbox lock' again",
        )
    return spec_sha256 or pinned


def check_tops(root: Path, what: str) -> None:
    """Refuse anything at the layer's top that overlayfs would not mount (a README, lib/, ...)."""
    for entry in sorted(os.listdir(root)):
        if entry not in LAYER_TOPS:
            raise BuildError(
                f"{what} put {entry!r} at the top of the layer; a layer holds only {', '.join(LAYER_TOPS)}",
                "add a map (e.g. {\"bin/\": \"usr/bin/\"}) or strip_components to the source",
            )
