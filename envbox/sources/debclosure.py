"""Debian control stanzas, dpkg version order, and the smallest package set to add over a host. Pure."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator, Sequence

from envbox.core.errors import BuildError

# ---- control format -------------------------------------------------------------------------


def parse_stanzas(text: str, keep: frozenset[str] | None = None) -> Iterator[dict[str, str]]:
    """Paragraphs of `Field: value` lines; keys lowercased (deb-control(5): case-insensitive).

    Continuation lines (leading space or tab) are joined with newlines, as dpkg keeps them.
    With `keep`, other fields are dropped (an index's long descriptions cost most of the time).
    """
    for block in _BLANK_LINES.split(text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.split("\n"):
            if not line or line[0] == "#":
                continue
            if line[0] in " \t":
                if key:
                    fields[key] += "\n" + line.strip()
                continue
            name, sep, value = line.partition(":")
            key = name.strip().lower() if sep else ""
            if keep is not None and key not in keep:
                key = ""
            elif key:
                fields[key] = value.strip()
        if fields:
            yield fields


_BLANK_LINES = re.compile(r"\n(?:[ \t\r]*\n)+")


# ---- dpkg version comparison (deb-version(7), dpkg's lib/dpkg/version.c) -------------------


def _order(c: str) -> int:
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256 if c else 0


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


@lru_cache(maxsize=4096)
def _split_version(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.strip().partition(":")
    if not sep:
        epoch, rest = "0", version.strip()
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return (int(epoch) if epoch.isdigit() else 0, upstream, revision)


def compare_versions(a: str, b: str) -> int:
    """<0, 0 or >0 as dpkg --compare-versions orders a and b."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def version_satisfies(version: str, op: str, wanted: str) -> bool:
    cmp = compare_versions(version, wanted)
    return {
        "<<": cmp < 0,
        "<=": cmp <= 0,
        "<": cmp <= 0,  # obsolete spelling of <=
        "=": cmp == 0,
        ">=": cmp >= 0,
        ">": cmp >= 0,  # obsolete spelling of >=
        ">>": cmp > 0,
    }[op]


# ---- relations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    """One alternative of a Depends-like field: `name[:arch] [(op version)]`."""

    name: str
    arch: str = ""  # qualifier after ':' ("any", "native", an architecture) or ""
    op: str = ""
    version: str = ""

    def __str__(self) -> str:
        text = self.name + (f":{self.arch}" if self.arch else "")
        return text + (f" ({self.op} {self.version})" if self.op else "")


_REL_RE = re.compile(
    r"(?P<name>[a-z0-9][a-z0-9+.\-]*)(?::(?P<arch>[a-z0-9\-]+))?\s*"
    r"(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[^\s)]+)\s*\))?\s*"
    r"(?:\[(?P<archs>[^\]]*)\])?\s*(?:<[^>]*>\s*)*"
)


@lru_cache(maxsize=8192)
def parse_relations(text: str, arch: str) -> tuple[tuple[Relation, ...], ...]:
    """`a (>= 1) | b, c` -> ((a>=1, b), (c,)); alternatives restricted away from arch are dropped."""
    groups: list[tuple[Relation, ...]] = []
    for group_text in text.replace("\n", " ").split(","):
        if not group_text.strip():
            continue
        alts: list[Relation] = []
        restricted = False
        for alt_text in group_text.split("|"):
            m = _REL_RE.fullmatch(alt_text.strip())
            if not m:
                raise BuildError(f"cannot parse package relation {alt_text.strip()!r} in {text!r}", "the package index looks damaged; update it")
            if m["archs"] is not None and not _arch_matches(m["archs"].split(), arch):
                restricted = True
                continue
            alts.append(Relation(m["name"], m["arch"] or "", m["op"] or "", m["version"] or ""))
        if alts or not restricted:
            groups.append(tuple(alts))
    return tuple(groups)


def _arch_matches(archs: list[str], arch: str) -> bool:
    positive = [a for a in archs if not a.startswith("!")]
    if positive:
        return arch in positive or "any" in positive
    return f"!{arch}" not in archs


# ---- packages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One stanza of a Packages index or of dpkg's status file (relations kept as text)."""

    name: str
    version: str
    architecture: str
    multi_arch: str = ""
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    breaks: str = ""
    conflicts: str = ""
    filename: str = ""
    size: int = 0
    sha256: str = ""
    origin: str = ""  # the archive base URL the index came from ("" for the host)


_PACKAGE_FIELDS = frozenset(
    "package version architecture multi-arch depends pre-depends provides breaks conflicts filename size sha256 status".split()
)


def read_packages(text: str, *, arch: str, origin: str = "", installed_only: bool = False) -> list[Package]:
    """Packages usable on arch from a Packages index, or (installed_only) from dpkg's status."""
    out = []
    for f in parse_stanzas(text, _PACKAGE_FIELDS):
        name, version, parch = f.get("package"), f.get("version"), f.get("architecture", "")
        if not name or not version:
            continue
        if installed_only and f.get("status", "").split()[-1:] != ["installed"]:
            continue
        multi_arch = f.get("multi-arch", "")
        if parch not in (arch, "all") and multi_arch != "foreign":
            continue
        size = f.get("size", "0")
        out.append(
            Package(
                name=name,
                version=version,
                architecture=parch,
                multi_arch=multi_arch,
                depends=f.get("depends", ""),
                pre_depends=f.get("pre-depends", ""),
                provides=f.get("provides", ""),
                breaks=f.get("breaks", ""),
                conflicts=f.get("conflicts", ""),
                filename=f.get("filename", ""),
                size=int(size) if size.isdigit() else 0,
                sha256=f.get("sha256", ""),
                origin=origin,
            )
        )
    return out


class _Pool:
    """Packages by name (highest version first) and by what they provide."""

    def __init__(self, packages: Iterable[Package], arch: str):
        self.arch = arch
        self.by_name: dict[str, list[Package]] = {}
        # Provides are indexed by a cheap split and parsed only for names the closure asks about.
        self._providing: dict[str, list[Package]] = {}
        for pkg in packages:
            self.by_name.setdefault(pkg.name, []).append(pkg)
            if pkg.provides:
                for item in pkg.provides.split(","):
                    name = item.split("(", 1)[0].split(":", 1)[0].strip()
                    self._providing.setdefault(name, []).append(pkg)
        for versions in self.by_name.values():
            if len(versions) > 1:
                _sort_desc(versions)

    def providers(self, name: str) -> list[tuple[Package, str]]:
        """(package, provided version or "") for each package that Provides name."""
        return [(pkg, v) for pkg in self._providing.get(name, ()) for v in _provided(pkg, name, self.arch)]


def _sort_desc(versions: list[Package]) -> None:
    import functools

    versions.sort(key=functools.cmp_to_key(lambda a, b: compare_versions(b.version, a.version)))


@dataclass(frozen=True)
class Pulled:
    """A package the layer takes from the suite, and why."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    origin: str
    reason: str  # "requested", "forced", or "PARENT: RELATION"
    host_version: str = ""  # the host's installed version this one shadows, if any

    @property
    def deb_name(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Closure:
    packages: tuple[Pulled, ...]
    warnings: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.packages)


# ---- the closure ----------------------------------------------------------------------------


@dataclass
class _View:
    """Which package answers to a name: the chosen one shadows the host's of the same name."""

    chosen: dict[str, Package]
    host: _Pool
    arch: str

    def satisfied_by(self, rel: Relation, *, host: bool, chosen: bool, exclude: str = "") -> Package | None:
        if not _arch_ok(rel, self.arch):
            return None
        candidates: list[tuple[Package, str | None]] = []
        if chosen and rel.name in self.chosen:
            candidates.append((self.chosen[rel.name], None))
        if host and rel.name not in self.chosen:
            candidates += [(p, None) for p in self.host.by_name.get(rel.name, [])]
        if chosen:
            candidates += [(p, v) for p in self.chosen.values() for v in _provided(p, rel.name, self.arch)]
        if host:
            candidates += [(p, v) for p, v in self.host.providers(rel.name) if p.name not in self.chosen]
        for pkg, provided in candidates:
            if pkg.name == exclude:
                continue
            if _version_ok(rel, pkg.version if provided is None else provided):
                return pkg
        return None


def _provided(pkg: Package, name: str, arch: str) -> list[str]:
    if not pkg.provides:
        return []
    return [rel.version if rel.op == "=" else "" for (rel, *_) in parse_relations(pkg.provides, arch) if rel.name == name]


def _version_ok(rel: Relation, version: str) -> bool:
    if not rel.op:
        return True
    # An unversioned Provides never satisfies a versioned relation (deb-control(5)).
    return bool(version) and version_satisfies(version, rel.op, rel.version)


def _arch_ok(rel: Relation, arch: str) -> bool:
    return rel.arch in ("", "any", "native", arch)


def resolve_closure(
    requested: Sequence[str],
    index: Sequence[Package],
    host: Sequence[Package],
    *,
    arch: str,
    skip: Sequence[str] = (),
    force: Sequence[str] = (),
    suite: str = "the suite",
) -> Closure:
    """The requested and forced packages plus every Depends/Pre-Depends the host cannot satisfy."""
    pool, host_pool = _Pool(index, arch), _Pool(host, arch)
    view = _View({}, host_pool, arch)
    pulled: dict[str, Pulled] = {}
    warnings: list[str] = []
    queue: deque[Package] = deque()

    def take(pkg: Package, reason: str) -> None:
        host_pkg = host_pool.by_name.get(pkg.name)
        view.chosen[pkg.name] = pkg
        pulled[pkg.name] = Pulled(pkg.name, pkg.version, pkg.architecture, pkg.filename, pkg.size, pkg.sha256, pkg.origin, reason, host_pkg[0].version if host_pkg else "")
        queue.append(pkg)

    for name, reason in [(n, "requested") for n in requested] + [(n, "forced") for n in force]:
        if name in view.chosen:
            continue
        if name not in pool.by_name:
            raise BuildError(f"package {name} is not in {suite}", f"check the name in the suite's index (apt-cache policy {name} on a {suite} system)")
        take(pool.by_name[name][0], reason)

    while queue:
        parent = queue.popleft()
        for field in (parent.pre_depends, parent.depends):
            for group in parse_relations(field, arch) if field else ():
                _resolve_group(parent, group, pool, view, take, skip, warnings, suite)

    warnings += _check_after(pulled, view, host_pool, arch)
    return Closure(tuple(pulled.values()), tuple(warnings))


def _resolve_group(parent: Package, group, pool: _Pool, view: _View, take, skip, warnings: list[str], suite: str) -> None:
    if not group:
        return
    if any(view.satisfied_by(rel, host=False, chosen=True) for rel in group):
        return
    if any(view.satisfied_by(rel, host=True, chosen=False) for rel in group):
        return
    text = " | ".join(str(r) for r in group)
    skipped, clashes = [], []
    for rel in group:
        if rel.name in skip:
            skipped.append(rel.name)
            continue
        if not _arch_ok(rel, view.arch):
            continue
        if rel.name in view.chosen:
            clashes.append(f"{rel.name} {view.chosen[rel.name].version} is already taken")
            continue
        real = [p for p in pool.by_name.get(rel.name, []) if _version_ok(rel, p.version)]
        if real:
            take(real[0], f"{parent.name}: {text}")
            return
        providers = sorted(
            {p.name: p for p, v in pool.providers(rel.name) if p.name not in skip and p.name not in view.chosen and _version_ok(rel, v)}.values(),
            key=lambda p: p.name,
        )
        if providers:
            take(providers[0], f"{parent.name}: {text} (provided)")
            return
    if skipped:
        warnings.append(f"skipped {', '.join(skipped)}: {parent.name} depends on {text}, which the host does not satisfy")
        return
    detail = f" ({'; '.join(clashes)})" if clashes else ""
    raise BuildError(
        f"{parent.name} {parent.version} depends on {text}, which neither the host nor {suite} can satisfy{detail}",
        "add a package that provides it to `packages:`, or list it under `skip:` if the layer works without it",
    )


def _check_after(pulled: dict[str, Pulled], view: _View, host_pool: _Pool, arch: str) -> list[str]:
    """Breaks/Conflicts between the layer and the host (both ways), and downgrades of host packages."""
    out = []
    chosen = view.chosen
    for name, pkg in chosen.items():
        host_version = pulled[name].host_version
        if host_version and compare_versions(pkg.version, host_version) < 0:
            out.append(f"{name} {pkg.version} is older than the host's {host_version}, which it shadows")
        for field, verb in ((pkg.breaks, "Breaks"), (pkg.conflicts, "Conflicts")):
            for group in parse_relations(field, arch) if field else ():
                for rel in group:
                    hit = view.satisfied_by(rel, host=True, chosen=True, exclude=name)
                    if hit is not None:
                        where = "the layer" if hit.name in chosen else "the host"
                        out.append(f"{name} {verb} {rel}: {where} has {hit.name} {hit.version}")
    for versions in host_pool.by_name.values():
        hpkg = versions[0]
        if hpkg.name in chosen:
            continue
        for field, verb in ((hpkg.breaks, "Breaks"), (hpkg.conflicts, "Conflicts")):
            for group in parse_relations(field, arch) if field else ():
                for rel in group:
                    if rel.name in chosen and _version_ok(rel, chosen[rel.name].version):
                        out.append(f"host package {hpkg.name} {verb} {rel}: the layer has {rel.name} {chosen[rel.name].version}")
    return out

