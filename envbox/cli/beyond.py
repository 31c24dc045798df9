"""Beyond one machine and one terminal: `envbox bin ...`, `envbox enter`, `envbox export`.
Thin; lazy imports. Registered on the app by cli/commands.py, like cli/store.py."""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

from envbox.cli.common import app, complete_profiles, envbox_paths

bin_app = typer.Typer(
    help="Commands on PATH that launch a profile.\n\nWrappers go to ~/.local/bin (root: /usr/local/bin; $ENVBOX_BIN_DIR overrides).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(bin_app, name="bin")


@bin_app.callback()
def _bin() -> None:
    """Commands on PATH that launch a profile.

    Wrappers go to ~/.local/bin (root: /usr/local/bin; $ENVBOX_BIN_DIR overrides)."""


@bin_app.command("install")
def bin_install(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_profiles),
    as_: Optional[str] = typer.Option(None, "--as", help="The command's name (default: the profile's name)."),
) -> int:
    """Write a wrapper so typing CMD runs `envbox launch NAME -- ARGS`."""
    from envbox.app import bins
    from envbox.app.prepare import load_named

    profile = load_named(envbox_paths(), name)  # refuses a profile that does not exist
    directory = bins.bin_dir(os.environ, os.getuid())
    path, replaced = bins.install(directory, as_ or profile.name, profile.name, bins.envbox_command(sys.argv[0]))
    print(f"{'updated' if replaced else 'installed'} {path} -> envbox launch {profile.name}")
    if not bins.on_path(directory, os.environ):
        print(f"envbox: warning: {directory} is not on your PATH\nhint: add it, e.g. export PATH=\"{directory}:$PATH\" in your shell's profile", file=sys.stderr)
    return 0


@bin_app.command("list")
def bin_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> int:
    """The wrappers envbox installed: command, profile, file."""
    from envbox.app import bins

    from envbox.config.scopes import all_profiles

    known = {ref.name for ref, _ in all_profiles(envbox_paths())}
    rows = [{"command": w.command, "profile": w.profile, "path": str(w.path), "envbox": w.envbox, "orphan": w.profile not in known}
            for w in bins.listing(bins.bin_dir(os.environ, os.getuid()))]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no commands installed (envbox bin install NAME)")
    for r in rows:
        note = "  (no such profile: 'envbox bin remove " + r["command"] + "')" if r["orphan"] else ""
        print(f"{r['command']:<20} {r['profile']:<20} {r['path']}{note}")
    return 0


@bin_app.command("remove")
def bin_remove(command: str = typer.Argument(..., help="The command's name (as in 'envbox bin list').")) -> int:
    """Remove a wrapper envbox installed (never a file envbox did not write)."""
    from envbox.app import bins

    found = bins.remove(bins.bin_dir(os.environ, os.getuid()), command)
    print(f"removed {found.path}")
    return 0


@app.command()
def enter(
    target: str = typer.Argument(..., help="A running launch: its profile's name, or a pid from 'envbox ps'."),
    command: Optional[List[str]] = typer.Argument(None, help="The command to run inside (after --; default: a shell)."),
) -> int:
    """A shell (or CMD) inside a running launch.

    It joins the launch's namespaces and cgroup, with the app's environment and directory."""
    from envbox.runtime import enter as enter_mod
    from envbox.runtime.running import launch_records

    records = launch_records(envbox_paths().runtime_dir)
    from envbox.runtime.procs import proc_parents

    parents = proc_parents()
    supervisor, record = enter_mod.pick(records, target, parents)
    return enter_mod.run(enter_mod.Target(supervisor, record, parents), list(command or []) or None)


@app.command()
def export(
    name: str = typer.Argument(..., help="Profile name.", autocompletion=complete_profiles),
    oci: Optional[str] = typer.Option(None, "--oci", help="Write an OCI image: a layout directory, or an OCI archive if OUT ends in .tar."),
    base: Optional[str] = typer.Option(None, "--base", help="The base image: OCI layout dir, OCI/docker archive, or a root filesystem tar."),
    kube: bool = typer.Option(False, "--kube", help="Also write OUT.pod.yaml: a Kubernetes Pod with the profile's limits."),
    systemd: bool = typer.Option(False, "--systemd", help="Write a systemd service unit (system unit as root, user unit otherwise)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="With --systemd: the unit file to write (default: the systemd unit directory)."),
    frozen: bool = typer.Option(False, "--frozen", help="Follow the lock file; never resolve anew."),
) -> int:
    """A profile as an OCI image or a systemd unit.

    --oci OUT writes an image (--base, --kube); --systemd writes a service unit."""
    from envbox.core.errors import EXIT_USAGE, EnvboxError

    if bool(oci) == bool(systemd):
        raise EnvboxError("say what to export: --oci OUT or --systemd", "e.g. envbox export NAME --oci NAME.tar --base base.tar", exit_code=EXIT_USAGE)
    if (kube or base) and not oci:
        raise EnvboxError("--kube and --base go with --oci", "e.g. envbox export NAME --oci NAME.tar --base base.tar --kube", exit_code=EXIT_USAGE)
    if output and not systemd:
        raise EnvboxError("--output goes with --systemd", "the image's path is the value of --oci", exit_code=EXIT_USAGE)
    from envbox.app.prepare import load_named, prepare
    from envbox.cli.common import progress

    from envbox.app.exports import export_unit, unit_target

    paths = envbox_paths()
    profile = load_named(paths, name)
    if systemd:
        unit_target(profile.name, output=output, environ=os.environ, uid=os.getuid())  # refuse before building
    with progress() as shown:
        prepared = prepare(paths, profile, build=True, frozen=frozen, progress=shown)
    if oci:
        return _export_oci(prepared, oci, base, kube)

    unit, warnings = export_unit(paths, prepared, output=output, environ=os.environ, uid=os.getuid())
    for warning in warnings:
        print(f"envbox: warning: {warning}", file=sys.stderr)
    scope = "" if os.getuid() == 0 else "--user "
    print(f"wrote {unit}")
    print(f"start it: systemctl {scope}daemon-reload && systemctl {scope}start {unit.name}")
    return 0


def _export_oci(prepared, out: str, base: Optional[str], kube: bool) -> int:
    from pathlib import Path

    from envbox.core.frozen import as_dict
    from envbox.export import oci as oci_mod

    plan = prepared.plan
    layers = [oci_mod.ExportLayer(**_layer_facts(item, layer)) for item, layer in zip(prepared.resolution.tools, plan.layers)]
    limits = as_dict(plan.limits)
    result = oci_mod.export(Path(out), profile=plan.profile, layers=layers, argv=list(plan.argv), env=dict(plan.env),
                            limits=limits, base_path=Path(base) if base else None)
    print(f"wrote {result.path} ({result.ref_name}, manifest {result.manifest_digest})")
    for row in result.layers:
        print(f"  {row['oci_digest'][:19]}  {row['release']}  (store {row['store_digest'][:16]})")
    if kube:
        from envbox.export.kube import pod_manifest
        from envbox.fsio import write_text_atomic
        import yaml

        pod = pod_manifest(plan.profile, result.ref_name, limits, {"envbox/profile": plan.profile})
        target = Path(f"{out}.pod.yaml")
        write_text_atomic(target, yaml.safe_dump(pod, sort_keys=False))
        print(f"wrote {target} (podman kube play {target}, after: podman load -i {out})")
    return 0


def _layer_facts(item, layer) -> dict:
    """What the image records about one profile layer: release, source, store digest, trees."""
    from envbox.core.catalog import source_summary
    from envbox.core.errors import EnvboxError

    if not layer.built:
        raise EnvboxError(f"{layer.label} is not built", f"run 'envbox build {item.spec.tool}'")
    if item.release is not None:
        source, digest = f"{item.release.kind}: {source_summary(item.release.source)}", layer.digest
    elif item.links:
        source, digest = f"host link {' '.join(f'/{a} -> {b}' for a, b in item.links)} (the base must provide {item.spec.host})", layer.digest
    else:
        source, digest = f"dir {item.prefix}", f"dir:{item.prefix}"
    return {"tool": layer.tool, "release": layer.label, "source": source, "store_digest": digest, "mounts": tuple(layer.mounts)}
