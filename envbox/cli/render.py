"""Human-readable text for plan and list output. Pure."""

from __future__ import annotations

from envbox.cli.table import Col, table
from envbox.core.limits import format_size


def size_or_dash(n: int | None) -> str:
    """A size for a table cell: one format everywhere (core.limits.format_size), '-' if unknown."""
    return "-" if n is None else format_size(n)


def render_plan(data: dict) -> str:
    out = [f"profile  {data['profile']}  ({data['scope']}: {data['file']})"]
    out.append("layers   (lowest first)")
    if not data["layers"]:
        out.append("  (none: the host's /usr as it is)")
    for layer in data["layers"]:
        where = layer["path"] if layer["built"] else "not built yet (launch or 'envbox build' builds it)"
        out.append(f"  {layer['tool']:<10} {layer['label']}")
        out.append(f"  {'':<10} {where}")
    out.append("mounts")
    for mount in data["mounts"]:
        out.append(f"  {mount['target']}: read-only overlay, top first:")
        out += [f"    {lower}" for lower in mount["lowers_top_first"]]
    if not data["mounts"]:
        out.append("  (none)")
    out.append("argv     " + (" ".join(data["argv"]) or "(none: use 'envbox run')"))
    limits = data["limits"]
    shown = [f"{k} {_limit_text(k, limits[k])}" for k in ("memory", "memory_swap", "cpu", "pids") if limits[k] is not None]
    out.append("limits   " + (", ".join(shown) or "none"))
    cg = data.get("cgroup")
    if cg:
        out.append(f"cgroup   {cg['backend']}: {cg['reason']}")
        out += [f"  cannot enforce: {p}" for p in cg["problems"]]
    out.append("env")
    out += [f"  {k}={v}" for k, v in sorted(data["env"].items())]
    if data.get("fields") and len({where.rsplit(":", 1)[0] for where in data["fields"].values()}) > 1:
        out.append("fields   (where each came from: extends merges several files)")
        out += [f"  {k:<20} {where}" for k, where in data["fields"].items()]
    out.append("sandbox  " + ("user + mount namespace" if data["userns"] else "mount namespace") + " + pid namespace")
    if data.get("seccomp"):
        out.append(f"seccomp  {data['seccomp']['filter']} ({data['seccomp']['option']})")
    if data["sandbox_command"]:
        out.append("command  (paste into a shell to run the same sandbox; launch also joins the cgroup)")
        out.append("  " + data["sandbox_command"])
    else:
        out.append("command  available once every layer is built")
    return "\n".join(out)


def render_list(rows: list[dict]) -> str:
    if not rows:
        return "no profiles found"
    out = []
    for row in rows:
        tools = ", ".join(f"{k} {v}" for k, v in row["tools"].items()) or "-"
        if row["error"]:
            # The error names the file already (path:line: ...): keep only what follows it.
            tools = "INVALID: " + _without_prefix(row["error"], row["file"])
        file = row["file"] + (f" (shadowed by {row['shadowed_by']})" if row["shadowed_by"] else "")
        out.append([row["name"], row["scope"], tools, file])
    return table([Col("NAME"), Col("SCOPE"), Col("TOOLS", wrap=True), Col("FILE")], out)


def _without_prefix(message: str, path: str) -> str:
    if message.startswith(path + ":"):
        rest = message[len(path) + 1:]
        line, sep, tail = rest.partition(": ")
        return f"line {line}: {tail}" if sep and line.isdigit() else rest.lstrip()
    return message


def _limit_text(key: str, value) -> str:
    """A limit as `plan` shows it: sizes in the one size format, cpu as cores."""
    if key in ("memory", "memory_swap"):
        return format_size(value)
    return f"{value:g}" if key == "cpu" else str(value)


def render_request(profile, sha256: str) -> str:
    """What a project file asks for, shown before it is trusted."""
    out = [f"{profile.path} asks for:"]
    out.append("  command: " + (" ".join(profile.command) or "(none)"))
    out.append("  tools:   " + (", ".join(f"{t.tool} {t.describe()}" for t in profile.tools) or "(none)"))
    out += [f"  env:     {k}={v}" for k, v in profile.env] or ["  env:     (none)"]
    lim = profile.limits
    shown = [f"{k} {_limit_text(k, getattr(lim, k))}" for k in ("memory", "memory_swap", "cpu", "pids") if getattr(lim, k) is not None]
    out.append("  limits:  " + (", ".join(shown) or "(none)"))
    if len(profile.origins) > 1:
        out.append("  extends: " + " <- ".join(path for path, _ in reversed(profile.origins)))
    out.append(f"  sha256:  {sha256}")
    return "\n".join(out)


def render_ps(rows: list[dict]) -> str:
    if not rows:
        return "no running launches"
    import time

    now = time.time()
    out = []
    for r in rows:
        up = f"{now - r['started']:.0f}s" if r.get("started") else "-"
        cpu = f"{r['cpu_seconds']:.2f}s" if r.get("cpu_seconds") is not None else "-"
        pids = str(r["pids"]) if r.get("pids") is not None else "-"
        cgroup = r["cgroups"][0] if r["cgroups"] else "-"
        out.append([r["profile"], str(r["pid"]), up, r["backend"], size_or_dash(r.get("memory")), cpu, pids, r.get("enter", "-"), cgroup])
    cols = [Col("PROFILE"), Col("PID", right=True), Col("UP", right=True), Col("BACKEND"), Col("MEMORY", right=True),
            Col("CPU", right=True), Col("PIDS", right=True), Col("ENTER"), Col("CGROUP")]
    return table(cols, out)


def render_catalog(rows: list[dict], *, parts: bool = False) -> str:
    """The releases; with parts, each release's optional parts (profile `with:`/`without:`)
    in a second table."""
    from envbox.core.catalog import source_summary

    out = [[r["tool"], r["version"], r["source"]["kind"], source_summary(r["source"]), "built" if r["built"] else ""] for r in rows]
    text = table([Col("TOOL"), Col("VERSION"), Col("KIND"), Col("SOURCE", wrap=True), Col("BUILT")], out)
    part_rows = [[r["tool"], r["version"], name, "yes" if part["default"] else "", part["description"]]
                 for r in rows for name, part in r.get("parts", {}).items()] if parts else []
    if part_rows:
        text += "\n\n" + table([Col("TOOL"), Col("VERSION"), Col("PART"), Col("DEFAULT"), Col("DESCRIPTION", wrap=True)], part_rows)
    return text


def render_layers(rows: list[dict]) -> str:
    if not rows:
        return "no layers yet (launch or 'envbox build' a profile)"
    out = [[r["digest"][:16], size_or_dash(r["size"]), r["label"], ", ".join(r["profiles"]) or "(unused)"] for r in rows]
    return table([Col("DIGEST"), Col("SIZE", right=True), Col("RELEASE", wrap=True), Col("PROFILES")], out)


def render_desktop_entries(rows: list[dict]) -> str:
    if not rows:
        return "no envbox desktop entries (add one with 'envbox desktop install NAME')"
    out = []
    for row in rows:
        origin = f"wraps {row['source']} ({row['original']})" if row["source"] else "generated from the profile"
        if row["orphan"]:
            origin += " [orphan: no such profile]"
        out.append([row["profile"], row["scope"], origin, row["file"]])
    return table([Col("PROFILE"), Col("SCOPE"), Col("ORIGIN", wrap=True), Col("FILE")], out)


def render_doctor(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append([r["status"], r["name"], r["detail"]])
        if r.get("hint") and r["status"] != "PASS":
            out.append(["", "", "hint: " + r["hint"]])
    return table([Col("STATUS"), Col("CHECK"), Col("DETAIL", wrap=True)], out)


def render_removals(rows: list[tuple[str, int, str]]) -> str:
    """What gc removes (or would): item, size, why."""
    return table([Col("ITEM"), Col("SIZE", right=True), Col("WHY")], [[item, format_size(size), why] for item, size, why in rows])
