"""`envbox export --systemd`: a service unit whose /usr is the profile's layers, stacked by
systemd itself (ExtensionDirectories=), with the profile's limits. The unit text and the
extension-release metadata are pure functions of plain values (table-driven tests)."""

from __future__ import annotations

from dataclasses import dataclass

MARKER = "# envbox-export: profile="


@dataclass(frozen=True)
class UnitSpec:
    profile: str
    description: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    extensions: tuple[str, ...]  # extension directories, lowest first
    limits: tuple[str, ...]  # "MemoryMax=...", in systemd's own syntax
    system: bool  # a system unit (root) or a user unit


def unit_name(profile: str) -> str:
    return f"envbox-{profile}.service"


def escape(text: str) -> str:
    """One word of a unit file setting: double-quoted, with the C escapes systemd reads back,
    '%' doubled (specifiers) and '$' doubled (ExecStart= expands $VAR)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + out.replace("%", "%%").replace("$", "$$") + '"'


def escape_env(name: str, value: str) -> str:
    """An Environment= assignment: quoted as a whole; '%' doubled (no $ expansion there)."""
    text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + text.replace("%", "%%") + '"'


def extension_release(os_release: str | None) -> str:
    """extension-release.NAME for a tree built against this host: its ID and VERSION_ID (the
    layers take from the host only what it lacks, so they fit this OS release), or ID=_any
    when the host's os-release cannot be read."""
    fields = {}
    for line in (os_release or "").splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() in ("ID", "VERSION_ID"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            fields[key.strip()] = value
    if not fields.get("ID"):
        return "# written by envbox: fits any OS (the host's os-release was unreadable)\nID=_any\n"
    lines = ["# written by envbox: the layers were built against this OS release", f"ID={fields['ID']}"]
    if fields.get("VERSION_ID"):
        lines.append(f"VERSION_ID={fields['VERSION_ID']}")
    return "\n".join(lines) + "\n"


# A systemd older than 251 ignores ExtensionDirectories= (an unknown key is only a warning), so
# the service would run on the host's /usr: fail closed instead. Each extension's
# extension-release file is in the merged /usr only while the extension is stacked there, and
# ExecStartPre= runs in the service's own mount namespace.
LAYERS_CHECK = ('for n; do [ -e "/usr/lib/extension-release.d/extension-release.$n" ] || '
                '{ echo "envbox: layer $n is not stacked on /usr: this systemd ignored ExtensionDirectories= '
                '(it needs systemd 251 or later)" >&2; exit 1; }; done')


def layers_check(extensions: tuple[str, ...]) -> list[str]:
    """ExecStartPre='s argv: fails, saying why, unless every extension is stacked on /usr."""
    return ["/bin/sh", "-c", LAYERS_CHECK, "envbox-layers-check", *(d.rstrip("/").rsplit("/", 1)[-1] for d in extensions)]


def render(spec: UnitSpec) -> str:
    lines = [
        f"# Written by 'envbox export {spec.profile} --systemd'; export again to update it.",
        "# While this file exists, 'envbox gc' keeps the layers (and extension trees) it uses.",
        f"{MARKER}{spec.profile}",
        "[Unit]",
        f"Description={spec.profile} (envbox profile)" + (f": {spec.description}".replace("%", "%%") if spec.description else ""),
        "",
        "[Service]",
        "Type=exec",
    ]
    if spec.extensions:
        # First listed is the lowest layer, as in the profile (systemd.exec(5)).
        lines.append("ExtensionDirectories=" + " ".join(escape(d) for d in spec.extensions))
        if not spec.system:
            # A per-user manager mounts the overlay in a user namespace: systemd 252 (Debian 12)
            # allows ExtensionDirectories= there only with PrivateUsers= on (later ones imply it).
            lines.append("PrivateUsers=yes")
    for name, value in spec.env:
        lines.append(f"Environment={escape_env(name, value)}")
    if spec.extensions:
        lines.append("ExecStartPre=" + " ".join(escape(a) for a in layers_check(spec.extensions)))
    lines.append("ExecStart=" + " ".join(escape(a) for a in spec.argv))
    lines += list(spec.limits)
    lines.append("NoNewPrivileges=yes")
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if spec.system else 'default.target'}", ""]
    return "\n".join(lines)


def read_marker(text: str) -> str | None:
    """The profile a unit file was exported from, or None if envbox did not write it."""
    for line in text.splitlines()[:5]:
        if line.startswith(MARKER):
            return line[len(MARKER):] or None
    return None
