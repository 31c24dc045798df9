"""Source kind "wheel": a binary wheel from PyPI, pinned by sha256, mapped into the layer. Network and files.

    source: {kind: wheel, requirement: "cmake==4.4.5", sha256: <hex of the .whl>,
             platform: manylinux_x86_64, map: {"cmake/data/bin/": "usr/bin/"}}

or, with `keep: DIR/` instead of `map`, the .whl file itself is put in the layer's DIR (for an
ensurepip or a seeder that installs from wheel files).

Only wheels: an sdist would mean running its build code. Nothing in the wheel runs; its RECORD
hashes are checked against what was extracted.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import urllib.parse
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from envbox.core.errors import BuildError
from envbox.sources import Artifact, BuildContext
from envbox.sources.archive import check_tops, expected_sha256
from envbox.sources.specs import check_keys, check_layer_map, check_sha256, check_url

if TYPE_CHECKING:
    from envbox.sources.extract import Extracted

KIND = "wheel"
KEYS = ("kind", "requirement", "sha256", "platform", "map", "keep", "index")
DEFAULT_INDEX = "https://pypi.org/pypi"
DEFAULT_PLATFORM = "manylinux_x86_64"
# manylinux1/2010/2014 are aliases for glibc 2.5, 2.12 and 2.17 (PEP 600).
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_PLATFORM_RE = re.compile(r"[a-z0-9_]+")


def check(spec: Mapping[str, Any]) -> None:
    check_keys(spec, KEYS, ("requirement", "sha256"))
    parse_requirement(spec["requirement"])
    check_sha256(spec["sha256"])
    if ("map" in spec) == ("keep" in spec):
        raise ValueError("a wheel source needs either map (extract it) or keep (the .whl file in a directory)")
    if "keep" in spec:
        keep = spec["keep"]
        if not isinstance(keep, str) or not keep.endswith("/"):
            raise ValueError(f"keep must be a layer directory ending in '/' such as usr/share/wheels/, not {keep!r}")
        check_layer_map({"x/": keep})
    else:
        check_layer_map(spec["map"])
    platform = spec.get("platform", DEFAULT_PLATFORM)
    if not isinstance(platform, str) or not _PLATFORM_RE.fullmatch(platform):
        raise ValueError(f"platform must be a wheel platform tag like manylinux_x86_64, not {platform!r}")
    if "index" in spec:
        check_url(spec["index"])


def parse_requirement(text: object) -> tuple[str, str]:
    """'name==version' -> (name, version); anything looser is a ValueError. Pure."""
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(text, str):
        raise ValueError(f"requirement must be a string like 'cmake==4.4.5', not {text!r}")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"bad requirement {text!r}: {exc}") from None
    specs = list(req.specifier)
    if req.extras or req.marker or req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        raise ValueError(f"requirement {text!r} must pin one exact version: 'name==version'")
    return req.name, specs[0].version


def platform_ok(filename: str, want: str, glibc: tuple[int, int] | None) -> bool:
    """Whether a wheel's tags fit `want` (a family like manylinux_x86_64, or an exact tag). Pure."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    # "manylinux_<arch>" names the family: any manylinux tag whose glibc the host has.
    family = want.startswith("manylinux_") and not re.match(r"manylinux_\d+_\d+_", want)
    arch = want[len("manylinux_"):]
    for tag in tags:
        if tag.platform in ("any", want):
            return True
        if family:
            needs = _manylinux_glibc(tag.platform, arch)
            if needs and (glibc is None or needs <= glibc):
                return True
    return False


def _manylinux_glibc(platform: str, arch: str) -> tuple[int, int] | None:
    match = re.fullmatch(rf"(manylinux1|manylinux2010|manylinux2014|manylinux_(\d+)_(\d+))_{arch}", platform)
    if not match:
        return None
    return _LEGACY.get(match.group(1)) or (int(match.group(2)), int(match.group(3)))


def host_glibc() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def build(spec: Mapping[str, Any], ctx: BuildContext) -> tuple[Artifact, ...]:
    from envbox.sources import extract as ex, fetch  # the builder\'s own: checks do not load them

    name, version = parse_requirement(spec["requirement"])
    want = spec.get("platform", DEFAULT_PLATFORM)
    got = fetch.cached(ctx.downloads, sha256=spec["sha256"])
    if got is None or not got.name:  # not cached (or cached without its name): ask the index
        url, filename = _find_file(spec.get("index", DEFAULT_INDEX), name, version, spec["sha256"])
        _check_file(filename, want, spec["sha256"], ctx.pins)
        got = fetch.fetch(url, ctx.downloads, name=filename, sha256=spec["sha256"], progress=fetch.line_progress(filename, ctx.progress))
    _check_file(got.name, want, spec["sha256"], ctx.pins)
    if "keep" in spec:
        _keep(got.path, ctx.root, spec["keep"] + got.name)
        return (Artifact(got.name, got.url, got.sha256, got.size),)
    ctx.progress(f"extracting {got.name}")
    result = ex.extract(got.path, ctx.root, fmt="zip", mapping=spec["map"], label=got.name)
    check_record(got.path, got.name, result)
    check_tops(ctx.root, got.name)
    return (Artifact(got.name, got.url, got.sha256, got.size),)


def _keep(wheel: Path, root: Path, dest: str) -> None:
    """Copy the verified .whl to root/dest; every directory on the way is created or is a real
    directory (never a link another source put there), and the file never exists yet."""
    from envbox.sources.specs import normalise

    try:
        normalise(dest)
    except ValueError as exc:
        raise BuildError(f"wheel keep path {dest!r} {exc}", "fix the release's keep: directory") from None
    where = Path(root)
    for part in dest.split("/")[:-1]:
        where = where / part
        if where.is_symlink() or (where.exists() and not where.is_dir()):
            raise BuildError(f"wheel keep path: {where.relative_to(root)} in the layer is not a directory", "keep the wheel in a directory of its own")
        where.mkdir(exist_ok=True)
    target = where / dest.split("/")[-1]
    try:
        with open(wheel, "rb") as src, open(target, "xb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except FileExistsError:
        raise BuildError(f"wheel keep path: the layer already has {dest}", "two sources keep the same wheel") from None
    target.chmod(0o644)


def _check_file(filename: str, want: str, sha256: str, pins: Mapping[str, str]) -> None:
    expected_sha256(filename, sha256, pins)
    if not platform_ok(filename, want, host_glibc()):
        raise BuildError(
            f"{filename} is not a wheel for platform {want} on this host (glibc {'.'.join(map(str, host_glibc() or ()))})",
            "pin the sha256 of the wheel built for this platform (see the release's files on pypi.org)",
        )


def _find_file(index: str, name: str, version: str, sha256: str) -> tuple[str, str]:
    """(url, filename) of the release file with this sha256, from the PyPI JSON API."""
    files, base = _release_files(index.rstrip("/"), name, version)
    files = [f for f in files if isinstance(f, dict) and isinstance(f.get("filename"), str) and isinstance(f.get("url"), str) and isinstance(f.get("digests"), dict)]
    wheels = [f for f in files if f.get("packagetype") == "bdist_wheel" and str(f.get("filename", "")).endswith(".whl")]
    if not wheels:
        raise BuildError(
            f"{name}=={version} has no wheel on the index, only a source distribution",
            "envbox never runs build code; choose a version that ships binary wheels",
        )
    for entry in files:
        if entry.get("digests", {}).get("sha256") == sha256:
            if entry not in wheels:
                raise BuildError(f"sha256 {sha256[:12]}… pins {entry.get('filename')}, a source distribution", "pin a wheel's sha256")
            # Mirrors may list file URLs relative to the JSON document.
            url = urllib.parse.urljoin(base, entry["url"])
            try:
                check_url(url)
            except ValueError as exc:
                raise BuildError(f"the index lists {entry['filename']} at {url}: {exc}", "use an https index") from None
            return url, entry["filename"]
    listed = "; ".join(f"{w['filename']} {w['digests'].get('sha256')}" for w in wheels[:4])
    raise BuildError(f"no file of {name}=={version} has sha256 {sha256}", f"the index lists: {listed}")


def _release_files(index: str, name: str, version: str) -> tuple[list[dict], str]:
    """The files of one release and the URL they are listed at."""
    from envbox.sources import fetch

    url = f"{index}/{name}/{version}/json"
    data = fetch.fetch_json(url, missing_ok=True)
    if isinstance(data, dict) and isinstance(data.get("urls"), list):
        return data["urls"], url
    # Some mirrors serve only the per-project document: take the version from its releases.
    url = f"{index}/{name}/json"
    data = fetch.fetch_json(url, missing_ok=True)
    releases = data.get("releases") if isinstance(data, dict) else None
    if not isinstance(releases, dict):
        raise BuildError(f"{name} is not on the index {index}", "check the requirement's name")
    from packaging.version import InvalidVersion, Version

    for key, files in releases.items():
        try:
            if Version(key) == Version(version) and isinstance(files, list):
                return files, url
        except InvalidVersion:
            continue
    raise BuildError(f"{name} has no version {version} on the index", f"available: {', '.join(list(releases)[-8:])}")


def check_record(wheel: Path, filename: str, result: Extracted) -> None:
    """Every member is listed in RECORD, and every extracted file has RECORD's sha256 and size."""
    with zipfile.ZipFile(wheel) as zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        records = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise BuildError(f"{filename} has {len(records)} .dist-info/RECORD files, not one", "the wheel is malformed")
        info = zf.getinfo(records[0])
        if info.file_size > 16 << 20:
            raise BuildError(f"{filename}: RECORD is {info.file_size} bytes", "the wheel is malformed")
        try:
            rows = list(csv.reader(io.StringIO(zf.read(info).decode("utf-8"))))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise BuildError(f"{filename}: RECORD cannot be read: {exc}", "the wheel is malformed") from None
    listed = {row[0]: row[1:] for row in rows if row}
    signatures = {records[0], records[0] + ".jws", records[0] + ".p7s"}
    for member in names:
        if member not in listed and member not in signatures:
            raise BuildError(f"{filename}: member {member!r} is not listed in RECORD", "the wheel was altered after it was built")
    for member in result.members:
        if member.kind != "f" or member.name in signatures:  # RECORD cannot list its own hash
            continue
        digest, size = _row(listed, member.name)
        if digest != "sha256=" + _b64(member.sha256) or (size and size != str(member.size)):
            raise BuildError(f"{filename}: member {member.name!r} does not match its RECORD hash", "the wheel was altered after it was built")


def _row(listed: dict, name: str) -> tuple[str, str]:
    row = listed.get(name) or []
    return (row[0] if row else "", row[1] if len(row) > 1 else "")


def _b64(hexdigest: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hexdigest)).rstrip(b"=").decode()
