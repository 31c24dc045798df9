"""Exported systemd units: the extension trees they stack, and the records `envbox gc` reads
to keep the layers (and trees) a unit still uses."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from envbox.core.errors import EXIT_USAGE, EnvboxError
from envbox.export import systemd as sd
from envbox.fsio import FileRefused, listdir_sorted, read_limited, unlink_quiet, write_text_atomic

SYSEXT_TARGETS = ("/usr", "/opt")  # what a sysext may carry (systemd-sysext(8))


def records_dir(paths) -> Path:
    return paths.state_dir / "exports"


def extensions_dir(paths) -> Path:
    return paths.data_dir / "extensions"


def unit_dir(environ, uid: int) -> Path:
    """$ENVBOX_SYSTEMD_DIR, else /etc/systemd/system (root) or the user's systemd/user."""
    explicit = environ.get("ENVBOX_SYSTEMD_DIR")
    if explicit:
        return Path(explicit)
    if uid == 0:
        return Path("/etc/systemd/system")
    config = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME", "/"), ".config")
    return Path(config) / "systemd" / "user"


def extension_name(layer) -> str:
    if layer.digest:
        return f"envbox-{layer.digest[:16]}"
    return "envbox-dir-" + hashlib.sha256(str(layer.root).encode()).hexdigest()[:16]


def _link_tree(src: str, dst: str) -> None:
    """dst mirrors src: directories made, files hard-linked (copied across file systems),
    symlinks recreated. Never follows a link."""
    os.mkdir(dst, 0o755)
    for name in sorted(os.listdir(src)):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            _link_tree(s, d)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d, follow_symlinks=False)


def _remove_tree(path: Path) -> None:
    def writable(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    shutil.rmtree(path, onerror=writable)


def prepare_extension(paths, layer, os_release: str | None) -> tuple[Path, list[str]]:
    """The extension directory for one plan layer (made once per store digest; a dir prefix
    is copied anew each time, since it may have changed); (path, warnings)."""
    name = extension_name(layer)
    root = extensions_dir(paths)
    target = root / name
    release_rel = Path("usr/lib/extension-release.d") / f"extension-release.{name}"
    release = sd.extension_release(os_release)
    warnings = [f"{layer.label}: {t} is not carried by a system extension (only /usr and /opt are)"
                for t, _ in layer.mounts if t not in SYSEXT_TARGETS]
    if layer.digest and target.is_dir():
        current = target / release_rel
        if not current.is_file() or current.read_text() != release:
            write_text_atomic(current, release)
        return target, warnings
    os.makedirs(root, 0o755, exist_ok=True)  # not group-writable under a umask of 002
    tmp = root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        _remove_tree(tmp)
    tmp.mkdir(0o755)
    try:
        for t, lower in layer.mounts:
            if t in SYSEXT_TARGETS:
                _link_tree(lower, str(tmp / t.lstrip("/")))
        (tmp / release_rel.parent).mkdir(parents=True, exist_ok=True)
        (tmp / release_rel).write_text(release)
        if target.exists():
            _remove_tree(target)
        os.replace(tmp, target)
    except BaseException:
        _remove_tree(tmp)
        raise
    return target, warnings


def unit_target(profile: str, *, output: str | None, environ, uid: int) -> Path:
    """Where the unit goes; refuses (before anything is built or written) a file there that
    envbox did not write."""
    target = Path(output) if output else unit_dir(environ, uid) / sd.unit_name(profile)
    if os.path.lexists(target):
        try:
            text = read_limited(target, limit=1 << 20)[0].decode("utf-8", "replace")
        except FileRefused:
            text = ""
        if sd.read_marker(text) is None:
            raise EnvboxError(f"{target} exists and was not written by envbox; not replacing it", "remove it yourself, or write elsewhere with --output FILE")
    return target


def export_unit(paths, prepared, *, output: str | None, environ, uid: int) -> tuple[Path, list[str]]:
    """Prepare the extension trees, write the unit and its record; (unit path, warnings)."""
    from envbox.cgroups.backend import systemd_properties

    plan = prepared.plan
    if not plan.argv:
        raise EnvboxError(f"profile {plan.profile} has no command", f"add `command: [...]` to {prepared.profile.path}", exit_code=EXIT_USAGE)
    target = unit_target(plan.profile, output=output, environ=environ, uid=uid)
    try:
        os_release = Path("/etc/os-release").read_text()
    except OSError:
        try:
            os_release = Path("/usr/lib/os-release").read_text()
        except OSError:
            os_release = None
    extensions, warnings = [], []
    for layer in plan.layers:
        if not layer.built:
            raise EnvboxError(f"{layer.label} is not built", f"run 'envbox build {plan.profile}'")
        path, notes = prepare_extension(paths, layer, os_release)
        extensions.append(str(path))
        warnings += notes
    props = systemd_properties(plan.limits)[1::2]
    spec = sd.UnitSpec(profile=plan.profile, description=prepared.profile.description, argv=tuple(plan.argv),
                       env=tuple(plan.env), extensions=tuple(extensions), limits=tuple(props), system=uid == 0)
    try:
        write_text_atomic(target, sd.render(spec))
    except OSError as exc:
        raise EnvboxError(f"cannot write {target}: {exc.strerror or exc}", "write elsewhere with --output FILE") from None
    record = {"unit": str(target.resolve()), "profile": plan.profile,
              "layers": [l.digest for l in plan.layers if l.digest], "extensions": extensions}
    os.makedirs(records_dir(paths), 0o755, exist_ok=True)
    write_text_atomic(records_dir(paths) / (hashlib.sha256(record["unit"].encode()).hexdigest()[:32] + ".json"), json.dumps(record, indent=1))
    return target, warnings


def live_exports(paths) -> list[dict]:
    """Records of exported units that still exist (and are still envbox's); others go."""
    out = []
    directory = records_dir(paths)
    for name in listdir_sorted(directory):
        if not name.endswith(".json"):
            continue
        path = directory / name
        try:
            record = json.loads(path.read_text())
            text = read_limited(record["unit"], limit=1 << 20)[0].decode("utf-8", "replace")
            if sd.read_marker(text) != record["profile"]:
                raise ValueError("not ours any more")
        except (OSError, ValueError, KeyError, TypeError, FileRefused):
            unlink_quiet(path)
            continue
        out.append(record)
    return out


def prune_extensions(paths, live: list[dict]) -> list[Path]:
    """Remove the extension trees no exported unit uses any more; the ones removed."""
    keep = {os.path.basename(e) for r in live for e in r.get("extensions", [])}
    removed = []
    root = extensions_dir(paths)
    for name in listdir_sorted(root):
        if name.startswith("envbox-") and name not in keep:
            _remove_tree(root / name)
            removed.append(root / name)
    return removed
