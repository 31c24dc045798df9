"""`envbox export --oci`: an OCI image whose layers are the profile's layers, over a base.

One OCI layer per tool release, an uncompressed tar made deterministically from the stored
layer tree (names sorted; uid/gid 0, no owner names, mtime 0, modes normalised to 0755/0644,
hard links stored as files), so the same release always gives the same layer digest and
images that share a release share the layer. The layer descriptors' annotations map each
OCI digest to the release, its source and envbox's own store digest.

The base is an OCI image layout (directory), an OCI archive (a tar of one), a docker-archive
(`docker save`/`podman save`) or a plain root filesystem tar (e.g. `mmdebstrap --format=tar`).
The output is an OCI layout directory, or an OCI archive when OUT ends in .tar; it appears
whole or not at all (written beside OUT under a temporary name, then renamed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from envbox.core.errors import EnvboxError

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
A = "org.envbox."  # prefix of envbox's annotations
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_arch() -> str:
    return GOARCH.get(platform.machine(), platform.machine())


# --- blobs -------------------------------------------------------------------------------


class _HashingWriter:
    """A write-only file that hashes what passes through (tarfile streams into it)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.f.write(data)


@dataclass
class Blob:
    digest: str  # "sha256:..."
    size: int
    media_type: str
    diff_id: str = ""  # for layers: the digest of the uncompressed tar
    annotations: dict = field(default_factory=dict)

    def descriptor(self) -> dict:
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


class Layout:
    """An OCI image layout being written in a directory."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            raise EnvboxError(f"unsupported blob digest {digest!r}", "use a base image with sha256 digests")
        return self.root / "blobs" / "sha256" / hexd

    def _commit(self, tmp: Path, digest: str) -> None:
        target = self.blob_path(digest)
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)

    def add_bytes(self, data: bytes, media_type: str) -> Blob:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            path.write_bytes(data)
        return Blob(digest, len(data), media_type)

    def add_json(self, obj: dict, media_type: str) -> Blob:
        return self.add_bytes(canonical(obj), media_type)

    def add_file(self, src, media_type: str) -> Blob:
        """Copy a file in (hashing it on the way)."""
        tmp = self.root / "blobs" / f".tmp-{os.getpid()}"
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            w = _HashingWriter(fout)
            while chunk := fin.read(1 << 20):
                w.write(chunk)
        digest = "sha256:" + w.h.hexdigest()
        self._commit(tmp, digest)
        return Blob(digest, w.size, media_type)

    def add_tree(self, mounts: list[tuple[str, str]]) -> Blob:
        """A deterministic layer tar of the trees (target in the image, directory on disk)."""
        tmp = self.root / "blobs" / f".tmp-{os.getpid()}"
        with open(tmp, "wb") as fout:
            w = _HashingWriter(fout)
            with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for target, directory in sorted(mounts):
                    _add_tree(tar, target.strip("/"), directory)
        digest = "sha256:" + w.h.hexdigest()
        self._commit(tmp, digest)
        return Blob(digest, w.size, MT_LAYER, diff_id=digest)

    def write_index(self, manifest: Blob, ref_name: str) -> None:
        desc = manifest.descriptor()
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        (self.root / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
        (self.root / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc]}))


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.mode = tarfile.SYMTYPE, 0o777
    else:
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
    return info


def _add_tree(tar: tarfile.TarFile, prefix: str, directory: str) -> None:
    """prefix/ and everything below directory, in sorted order, never following a link."""
    root_st = os.stat(directory)
    tar.addfile(_info(prefix, root_st))

    def walk(rel: str) -> None:
        path = os.path.join(directory, rel) if rel else directory
        for name in sorted(os.listdir(path)):
            sub = f"{rel}/{name}" if rel else name
            full = os.path.join(directory, sub)
            st = os.lstat(full)
            info = _info(f"{prefix}/{sub}", st)
            if stat.S_ISLNK(st.st_mode):
                info.linkname = os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                tar.addfile(info)
                walk(sub)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            # anything else cannot be in a stored layer (treedigest refuses it); a dir prefix's
            # sockets or devices are left out.

    walk("")


# --- the base image ----------------------------------------------------------------------


@dataclass
class Base:
    config: dict  # the image config (architecture, os, config, rootfs, history)
    layers: list[Blob]  # already in the output layout
    description: str
    manifest_digest: str | None = None


def _pick_manifest(layout_dir: Path, index: dict, arch: str) -> dict:
    manifests = index.get("manifests") or []
    if not manifests:
        raise EnvboxError(f"the base image {layout_dir} lists no manifests", "give an OCI image layout with one image in index.json")
    def fits(m):
        p = m.get("platform") or {}
        return not p or (p.get("os", "linux") == "linux" and p.get("architecture", arch) == arch)
    chosen = next((m for m in manifests if fits(m)), None)
    if chosen is None:
        raise EnvboxError(f"the base image {layout_dir} has no linux/{arch} image", "give a base built for this machine's architecture")
    if chosen.get("mediaType") in (MT_INDEX, DOCKER_MANIFEST_LIST):
        nested = json.loads((layout_dir / "blobs" / "sha256" / chosen["digest"].split(":", 1)[1]).read_bytes())
        return _pick_manifest(layout_dir, nested, arch)
    return chosen


def _read_layout(src: Path, out: Layout) -> Base:
    index = json.loads((src / "index.json").read_bytes())
    desc = _pick_manifest(src, index, host_arch())
    blob = lambda d: src / "blobs" / d.split(":", 1)[0] / d.split(":", 1)[1]
    manifest = json.loads(blob(desc["digest"]).read_bytes())
    config = json.loads(blob(manifest["config"]["digest"]).read_bytes())
    layers = []
    for layer in manifest.get("layers", []):
        added = out.add_file(blob(layer["digest"]), layer.get("mediaType", MT_LAYER).replace("vnd.docker.image.rootfs.diff.tar.gzip", "vnd.oci.image.layer.v1.tar+gzip"))
        if added.digest != layer["digest"]:
            raise EnvboxError(f"blob {layer['digest']} of the base image {src} is damaged (its content hashes to {added.digest})", "fetch the base image again")
        layers.append(added)
    return Base(config, layers, str(src), desc["digest"])


def _read_docker_archive(tmp: Path, src: Path, out: Layout) -> Base:
    entries = json.loads((tmp / "manifest.json").read_bytes())
    entry = entries[0]
    config = json.loads((tmp / entry["Config"]).read_bytes())
    layers = []
    for name in entry["Layers"]:
        layers.append(_layer_from_tar(out, tmp / name))
    return Base(config, layers, str(src))


def _layer_from_tar(out: Layout, path: Path) -> Blob:
    """A layer from a tar (gzip-compressed or not): the blob as it is, and its diff_id."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        blob = out.add_file(path, MT_LAYER_GZIP)
        h = hashlib.sha256()
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        blob.diff_id = "sha256:" + h.hexdigest()
        return blob
    with open(path, "rb") as f:
        head = f.read(262)
    if head[257:262] != b"ustar":
        raise EnvboxError(f"{path} is neither a tar nor a gzip-compressed tar", "give an uncompressed or gzip-compressed tar (e.g. mmdebstrap --format=tar)")
    blob = out.add_file(path, MT_LAYER)
    blob.diff_id = blob.digest
    return blob


def read_base(src: Path | None, out: Layout, work: Path) -> Base:
    """The base image's config and layers (copied into out)."""
    if src is None:
        return Base({"architecture": host_arch(), "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}, [], "none")
    if not src.exists():
        raise EnvboxError(f"no base image at {src}", "give an OCI layout directory, an OCI or docker archive, or a root filesystem tar")
    if src.is_dir():
        if not (src / "oci-layout").is_file() or not (src / "index.json").is_file():
            raise EnvboxError(f"{src} is not an OCI image layout (no oci-layout and index.json)", "give an OCI layout directory, an OCI or docker archive, or a root filesystem tar")
        return _read_layout(src, out)
    names = set()
    try:
        with tarfile.open(src, "r:*") as tar:
            for member in tar:
                names.add(member.name.lstrip("./").rstrip("/"))
                if len(names) > 64 and not {"oci-layout", "manifest.json"} & names:
                    break  # a root filesystem: no need to list all of it
            if "oci-layout" in names or "manifest.json" in names:
                unpack = work / "base"
                unpack.mkdir()
                for member in tar.getmembers():
                    # docker save links a layer it holds twice (a relative symlink inside).
                    inside = lambda p: not p.startswith("/") and not os.path.normpath(p).startswith("..")  # noqa: E731
                    link_ok = member.issym() and inside(os.path.join(os.path.dirname(member.name), member.linkname))
                    if not (member.isfile() or member.isdir() or link_ok) or not inside(member.name):
                        raise EnvboxError(f"the base archive {src} has an unsafe member {member.name!r}", "give an archive made by podman/skopeo/docker save")
                tar.extractall(unpack)
                return _read_layout(unpack, out) if "oci-layout" in names else _read_docker_archive(unpack, src, out)
    except tarfile.TarError as exc:
        raise EnvboxError(f"cannot read the base image {src}: {exc}", "give an OCI layout directory, an OCI or docker archive, or a root filesystem tar") from None
    # A root filesystem tar: one layer, a minimal config.
    layer = _layer_from_tar(out, src)
    config = {"architecture": host_arch(), "os": "linux", "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
              "history": [{"created_by": f"root filesystem {src.name}"}]}
    return Base(config, [layer], f"root filesystem tar {src}")


# --- the image ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportLayer:
    """One of the profile's layers as the image carries it."""

    tool: str
    release: str  # label: "python 3.11.2 (deb bookworm)"
    source: str  # where it came from, one line
    store_digest: str  # envbox's digest of the tree, or "dir:PATH" for a dir prefix
    mounts: tuple[tuple[str, str], ...]  # (target, directory)


@dataclass
class Exported:
    path: Path
    manifest_digest: str
    ref_name: str
    layers: list[dict]  # tool, release, source, store_digest, oci_digest


def image_config(base: dict, *, argv: list[str], env: dict[str, str], labels: dict[str, str], diff_ids: list[str], history: list[dict]) -> dict:
    """The image config: the base's, with the profile's layers, entrypoint, env and labels. Pure."""
    config = json.loads(json.dumps(base))  # a deep copy
    inner = dict(config.get("config") or {})
    merged = {}
    for item in inner.get("Env") or []:
        name, _, value = item.partition("=")
        merged[name] = value
    merged.update(env)
    inner["Env"] = [f"{k}={v}" for k, v in merged.items()]
    if argv:
        inner["Entrypoint"] = list(argv)
        inner["Cmd"] = None
    inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
    config["config"] = {k: v for k, v in inner.items() if v is not None}
    config["rootfs"] = {"type": "layers", "diff_ids": list((config.get("rootfs") or {}).get("diff_ids") or []) + diff_ids}
    config["history"] = list(config.get("history") or []) + history
    config.setdefault("architecture", host_arch())
    config.setdefault("os", "linux")
    return config


def export(out: Path, *, profile: str, layers: list[ExportLayer], argv: list[str], env: dict[str, str],
           limits: dict, base_path: Path | None, extra_annotations: dict | None = None) -> Exported:
    """Write the image to out (an OCI layout directory, or an OCI archive if it ends in .tar)."""
    if os.path.lexists(out):
        raise EnvboxError(f"{out} already exists; not overwriting it", "remove it, or export to a new path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise EnvboxError(f"the directory {parent} does not exist", "create it, or export elsewhere")
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        layout = Layout(work / "layout")
        base = read_base(base_path, layout, work)
        blobs, rows = [], []
        for layer in layers:
            blob = layout.add_tree(list(layer.mounts))
            blob.annotations = {f"{A}tool": layer.tool, f"{A}release": layer.release, f"{A}source": layer.source, f"{A}store-digest": layer.store_digest}
            blobs.append(blob)
            rows.append({"tool": layer.tool, "release": layer.release, "source": layer.source, "store_digest": layer.store_digest, "oci_digest": blob.digest})
        annotations = {
            "org.opencontainers.image.title": profile,
            f"{A}profile": profile,
            f"{A}layers": json.dumps(rows, sort_keys=True),
            f"{A}limits": json.dumps({k: v for k, v in limits.items() if v is not None}, sort_keys=True),
            f"{A}base": base.description,
            **(extra_annotations or {}),
        }
        if base.manifest_digest:
            annotations["org.opencontainers.image.base.digest"] = base.manifest_digest
        history = [{"created_by": f"envbox: {r['release']} (store {r['store_digest'][:23]})", "comment": r["source"]} for r in rows]
        config = image_config(base.config, argv=argv, env=env, labels=annotations,
                              diff_ids=[b.diff_id for b in blobs], history=history)
        config_blob = layout.add_json(config, MT_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": config_blob.descriptor(),
                    "layers": [b.descriptor() for b in base.layers + blobs], "annotations": annotations}
        manifest_blob = layout.add_json(manifest, MT_MANIFEST)
        ref_name = f"localhost/envbox/{profile}:{manifest_blob.digest.split(':')[1][:12]}"
        layout.write_index(manifest_blob, ref_name)
        if out.name.endswith(".tar"):
            tmp_tar = work / "image.tar"
            with tarfile.open(tmp_tar, "w", format=tarfile.PAX_FORMAT) as tar:
                for top in ("oci-layout", "index.json", "blobs"):
                    _add_plain(tar, layout.root / top, top)
            os.replace(tmp_tar, out)
        else:
            os.replace(layout.root, out)
        return Exported(out, manifest_blob.digest, ref_name, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add_plain(tar: tarfile.TarFile, path: Path, name: str) -> None:
    st = os.lstat(path)
    info = _info(name, st)
    if stat.S_ISDIR(st.st_mode):
        tar.addfile(info)
        for child in sorted(os.listdir(path)):
            if not child.startswith("."):
                _add_plain(tar, path / child, f"{name}/{child}")
    else:
        info.mode = 0o644
        with open(path, "rb") as f:
            tar.addfile(info, f)
