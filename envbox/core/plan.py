"""Resolution + stored layers + host facts -> a Plan: layers, mounts, env, argv. Pure.

A Plan is frozen data: `envbox plan` prints it, and Plan.to_cache() is what the fast launch
path keeps (plain values, read back by runtime.supervisor.spec_from_cache without importing
this module). The sandbox's argv is rendered from either by core.sandboxargs alone.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from envbox.core import sandboxargs
from envbox.core.limits import Limits
from envbox.core.frozen import as_dict

if TYPE_CHECKING:
    from envbox.core.resolve import Resolution

# /usr/local first as on a stock Debian; the standard directories come before any per-user
# shim directory, so `#!/usr/bin/env python` finds the layer's python rather than a pyenv or
# asdf shim. The caller's own PATH entries (~/.local/bin, ...) follow (Plan.path_tail).
DEFAULT_PATH = sandboxargs.STANDARD_PATH
OVERLAY_TARGETS = ("usr", "etc", "opt")


@dataclass(frozen=True)
class PlanLayer:
    tool: str
    label: str
    kind: str  # catalog | host | dir
    digest: str | None  # None for a dir prefix
    root: str | None  # the stored layer root, or None when not built yet
    mounts: tuple[tuple[str, str], ...]  # (target, lower dir)

    @property
    def built(self) -> bool:
        return self.kind == "dir" or self.root is not None


@dataclass(frozen=True)
class Plan:
    profile: str
    profile_path: str
    scope: str
    layers: tuple[PlanLayer, ...]  # lowest first
    env: tuple[tuple[str, str], ...]  # fixed part: release env, profile env, PATH
    argv: tuple[str, ...]
    limits: Limits = field(default_factory=Limits)
    allow_unenforced: bool = False
    userns: bool = False
    single_instance: tuple[tuple[str, str], ...] = ()  # (lock|socket|dbus|separate_with, value)
    defaults: tuple[tuple[str, str], ...] = ()  # release env: below the caller's passed variables
    path_tail: bool = True  # append the caller's PATH entries (false when the profile sets PATH)
    prefixes: tuple[str, ...] = ()  # writable per-profile prefixes (npm -g), made before launch

    @property
    def ready(self) -> bool:
        return all(layer.built for layer in self.layers)

    def overlays(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(target, lowers top first) for every directory some layer carries."""
        out = []
        for target in OVERLAY_TARGETS:
            lowers = tuple(lower for layer in reversed(self.layers) for t, lower in layer.mounts if t == f"/{target}")
            if lowers:
                out.append((f"/{target}", lowers))
        return tuple(out)

    def app_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The app's whole environment: allowed caller variables, then the plan's."""
        return sandboxargs.app_env(environ, dict(self.env), dict(self.defaults), self.path_tail)

    def sandbox_args(self, environ: Mapping[str, str], cwd: str, *, extra: tuple[str, ...] = (), cgroup_files: tuple[str, ...] = (), readonly: tuple[str, ...] = ()) -> list[str]:
        """The sandbox's argv (after `python3 -SI sandbox.py`). Pure: every input is an argument."""
        return sandboxargs.render(
            userns=self.userns, overlays=self.overlays(), env=self.app_env(environ), cwd=cwd,
            argv=self.argv, extra=extra, cgroup_files=cgroup_files, readonly=readonly,
        )

    def to_cache(self) -> dict:
        """What the fast path needs to launch again: plain JSON, read without dataclasses."""
        return {
            "profile": self.profile,
            "userns": self.userns,
            "overlays": [[t, list(lw)] for t, lw in self.overlays()],
            "env": dict(self.env),
            "defaults": dict(self.defaults),
            "path_tail": self.path_tail,
            "argv": list(self.argv),
            "limits": as_dict(self.limits),
            "allow_unenforced": self.allow_unenforced,
            "digests": [l.digest for l in self.layers if l.digest],
            "single_instance": dict(self.single_instance),
        }

    def to_json(self, environ: Mapping[str, str], cwd: str, launcher: tuple[str, ...], *, readonly: tuple[str, ...] = ()) -> dict:
        return {
            "profile": self.profile,
            "file": self.profile_path,
            "scope": self.scope,
            "layers": [
                {"tool": l.tool, "label": l.label, "kind": l.kind, "digest": l.digest, "path": l.root, "built": l.built, "mounts": [list(m) for m in l.mounts]}
                for l in self.layers
            ],
            "mounts": [{"target": t, "lowers_top_first": list(lw) + [f"{t} (host)"]} for t, lw in self.overlays()],
            "env": self.app_env(environ),
            "argv": list(self.argv),
            "limits": {"memory": self.limits.memory, "memory_swap": self.limits.memory_swap, "cpu": self.limits.cpu, "pids": self.limits.pids},
            "allow_unenforced": self.allow_unenforced,
            "userns": self.userns,
            "seccomp": {"filter": sandboxargs.TTY_FILTER, "option": sandboxargs.TTY_FILTER_OPTION},
            "single_instance": dict(self.single_instance) or None,
            "sandbox_command": shell_command(launcher, self.sandbox_args(environ, cwd, readonly=readonly)) if self.ready else None,
        }


def shell_command(launcher: tuple[str, ...], args: list[str]) -> str:
    """A command line that runs exactly this sandbox when pasted into a POSIX shell."""
    return " ".join(shlex.quote(a) for a in (*launcher, *args))


@dataclass(frozen=True)
class Stored:
    """Where a tool's layer is in the store, and which top-level directories it carries."""

    digest: str
    root: str
    targets: tuple[str, ...]  # e.g. ("usr",) or ("etc", "usr")


def build_plan(resolution: Resolution, stored: Mapping[str, Stored], *, uid: int, prefix_root: str | None = None) -> Plan:
    """stored: tool -> its built layer (absent when not built yet). prefix_root: where the
    writable per-profile prefixes live (a release's `writable_prefix`). Pure."""
    profile = resolution.profile
    layers = []
    env: dict[str, str] = {}
    defaults: dict[str, str] = {}
    path = DEFAULT_PATH
    prefixes = []
    for item in resolution.tools:
        tool = item.spec.tool
        if item.prefix:
            layers.append(PlanLayer(tool, item.label(), "dir", None, item.prefix, (("/usr", item.prefix),)))
            continue
        layer = stored.get(tool)
        if layer is None:
            layers.append(PlanLayer(tool, item.label(), item.kind, None, None, ()))
        else:
            mounts = tuple((f"/{t}", f"{layer.root}/{t}") for t in layer.targets if t in OVERLAY_TARGETS)
            layers.append(PlanLayer(tool, item.label(), item.kind, layer.digest, layer.root, mounts))
        if item.release:
            defaults.update(item.release.env)
            if item.release.writable_prefix and prefix_root:
                # e.g. npm_config_prefix: `npm install -g` writes here, never into the read-only layer.
                prefix = f"{prefix_root}/{profile.name}/{tool}-{item.release.version}"
                env[item.release.writable_prefix] = prefix
                path = f"{path}:{prefix}/bin"
                prefixes.append(prefix)
    env["PATH"] = path
    env.update(profile.env)
    env["ENVBOX_PROFILE"] = profile.name
    return Plan(
        profile=profile.name,
        profile_path=str(profile.path),
        scope=profile.scope,
        layers=tuple(layers),
        env=tuple(env.items()),
        argv=profile.command,
        limits=profile.limits,
        allow_unenforced=profile.allow_unenforced,
        userns=uid != 0,
        single_instance=tuple((k, v) for k, v in profile.single_instance.to_json().items() if v) if profile.single_instance else (),
        defaults=tuple(defaults.items()),
        path_tail="PATH" not in dict(profile.env),
        prefixes=tuple(prefixes),
    )
