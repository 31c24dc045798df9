"""The pure rules of source specs, shared by the kinds' checks: URLs, digests, integrity strings,
archive member names and layer maps. Importing them loads neither the downloader nor the
extractor, so validating a catalog stays cheap. Pure, except for the loopback test switch."""

from __future__ import annotations

import base64
import os
import urllib.parse
from typing import Any, Iterable, Mapping

from envbox.core import fields

FORMATS = ("tar", "tar.gz", "tar.xz", "tar.bz2", "tar.zst", "zip")
LAYER_TOPS = ("usr", "etc", "opt")  # what an overlay layer may hold (plan.OVERLAY_TARGETS)
# Tests serve fixtures from a local http.server; users only ever get https.
LOOPBACK_SWITCH = "ENVBOX_ALLOW_HTTP_LOOPBACK"
_DIGEST_SIZE = {"sha512": 64, "sha256": 32}
# Linux's limits (limits.h), in bytes: a name component, and a whole path without its NUL.
# A member beyond them could never be created or opened by path: it fails by name, up front.
NAME_MAX = fields.NAME_MAX
PATH_MAX = fields.PATH_MAX - 1


# ---- URLs and digests ------------------------------------------------------------------------


def check_url(url: object) -> None:
    """Raise ValueError unless url is https (or an absolute local path). Pure, except for the test switch."""
    if not isinstance(url, str) or not url:
        raise ValueError("url must be a non-empty string")
    if os.path.isabs(url):
        fields.absolute_path(url, "a local url")  # the same rule as paths in profiles
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if _loopback_allowed(parts):
        return
    raise ValueError(f"url {url!r} must be https:// or an absolute path")


def _loopback_allowed(parts: urllib.parse.SplitResult) -> bool:
    return parts.scheme == "http" and parts.hostname == "127.0.0.1" and os.environ.get(LOOPBACK_SWITCH) == "1"


def check_sha256(value: object, what: str = "sha256") -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{what} must be 64 lowercase hex digits, not {value!r}")
    return value


def parse_integrity(sri: object) -> tuple[str, str]:
    """An npm/SRI integrity string -> (algorithm, hex digest); the strongest sha2 hash wins. Pure."""
    if not isinstance(sri, str):
        raise ValueError(f"integrity must be a string like 'sha512-<base64>', not {sri!r}")
    found: dict[str, str] = {}
    for token in sri.split():
        algo, _, b64 = token.partition("-")
        if algo in ("sha512", "sha256"):
            try:
                raw = base64.b64decode(b64.split("?")[0], validate=True)
            except ValueError:
                raise ValueError(f"integrity {token!r} is not valid base64") from None
            if len(raw) != _DIGEST_SIZE[algo]:
                raise ValueError(f"integrity {token!r} has the wrong length for {algo}")
            found[algo] = raw.hex()
    for algo in ("sha512", "sha256"):
        if algo in found:
            return algo, found[algo]
    raise ValueError(f"integrity {sri!r} has no sha512 or sha256 hash (sha1 is too weak to pin)")


def url_name(url: str) -> str:
    """The file name at the end of a URL or path. Pure."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) or "download"


# ---- archive members and layer maps ----------------------------------------------------------


def normalise(name: str) -> str:
    """An archive member name as a clean relative path ('' for the root); ValueError if unsafe."""
    if "\0" in name:
        raise ValueError("has a NUL byte in its name")
    if os.path.isabs(name):
        raise ValueError("is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("has a '..' component")
    if any(p.startswith(".wh.") for p in parts):
        raise ValueError("is an overlayfs whiteout name (.wh.*)")
    longest = max((len(os.fsencode(p)) for p in parts), default=0)
    if longest > NAME_MAX:
        raise ValueError(f"has a {longest}-byte name component, longer than the {NAME_MAX}-byte limit of file names")
    clean = "/".join(parts)
    if len(os.fsencode(clean)) > PATH_MAX:
        raise ValueError(f"has a {len(os.fsencode(clean))}-byte path, longer than the {PATH_MAX}-byte limit of paths")
    return clean


def strip(name: str, count: int) -> str | None:
    """name without its first `count` components; None when nothing is left. Pure."""
    parts = name.split("/")[count:] if name else []
    return "/".join(parts) or None


def check_map(mapping: object) -> dict[str, str]:
    """Validate a map of archive paths to layer paths; ValueError naming the bad entry. Pure."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError("map must be a non-empty mapping of archive paths to layer paths")
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("map keys and values must be strings")
        for text in (key, value):
            try:
                clean = normalise(text)
            except ValueError as exc:
                raise ValueError(f"map entry {text!r} {exc}") from None
            if not clean or clean + ("/" if text.endswith("/") else "") != text:
                raise ValueError(f"map entry {text!r} must be a plain relative path like 'pkg/bin/' or 'pkg/bin/tool'")
        if key.endswith("/") != value.endswith("/"):
            raise ValueError(f"map {key!r} -> {value!r}: a directory (ending in '/') must map to a directory")
    return dict(mapping)


def map_path(name: str, mapping: Mapping[str, str] | None) -> str | None:
    """Where a (normalised) member goes: itself without a map; None when the map leaves it out. Pure."""
    if mapping is None:
        return name
    parts = name.split("/")
    best, best_len = None, -1
    for key in mapping:
        key_parts = key.rstrip("/").split("/")
        if key.endswith("/"):  # a directory: itself and everything below it
            hit = parts[: len(key_parts)] == key_parts
        else:
            hit = parts == key_parts
        if hit and len(key_parts) > best_len:
            best, best_len = key, len(key_parts)
    if best is None:
        return None
    if not best.endswith("/"):
        return mapping[best]
    return "/".join(mapping[best].rstrip("/").split("/") + parts[best_len:])


# ---- source spec keys ------------------------------------------------------------------------


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
    for target in check_map(mapping).values():
        if target.split("/")[0] not in LAYER_TOPS:
            raise ValueError(f"map destination {target!r} must lie under usr/, etc/ or opt/")
