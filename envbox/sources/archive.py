"""Source kind "archive": a tar or zip file by https URL or absolute path, sha256-pinned. Network and files.

    source: {kind: archive, url: https://example.org/tool-1.2.tar.xz, sha256: <hex>,
             strip_components: 1, map: {"bin/": "usr/bin/"}, format: tar.xz}

Also holds the checks the wheel and npm kinds share (keys, maps, pins, layer tops).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from envbox.core.errors import BuildError
from envbox.sources import Artifact, BuildContext
from envbox.sources.specs import LAYER_TOPS, FORMATS, check_keys, check_layer_map, check_sha256, check_url, url_name  # noqa: F401  (check_keys, check_layer_map: also used by wheel and npm through here)

KIND = "archive"
KEYS = ("kind", "url", "sha256", "strip_components", "map", "format")


def check(spec: Mapping[str, Any]) -> None:
    check_keys(spec, KEYS, ("url", "sha256"))
    check_url(spec["url"])
    check_sha256(spec["sha256"])
    strip = spec.get("strip_components", 0)
    if not isinstance(strip, int) or isinstance(strip, bool) or not 0 <= strip <= 16:
        raise ValueError(f"strip_components must be a whole number from 0 to 16, not {strip!r}")
    if "map" in spec:
        check_layer_map(spec["map"])
    if "format" in spec and spec["format"] not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {spec['format']!r}")


def build(spec: Mapping[str, Any], ctx: BuildContext) -> tuple[Artifact, ...]:
    from envbox.sources import extract as ex, fetch  # the builder's own: checks do not load them

    url = spec["url"]
    name = url_name(url)
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
