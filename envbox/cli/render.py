"""Human-readable text for plan and list output. Pure."""

from __future__ import annotations

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
    shown = []
    if limits["memory"] is not None:
        shown.append(f"memory {size_or_dash(limits['memory'])}")
    if limits["memory_swap"] is not None:
        shown.append(f"memory_swap {size_or_dash(limits['memory_swap'])}")
    if limits["cpu"] is not None:
        shown.append(f"cpu {limits['cpu']:g}")
    if limits["pids"] is not None:
        shown.append(f"pids {limits['pids']}")
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
    if data["sandbox_command"]:
        out.append("command  (paste into a shell to run the same sandbox; launch also joins the cgroup)")
        out.append("  " + data["sandbox_command"])
    else:
        out.append("command  available once every layer is built")
    return "\n".join(out)


def render_list(rows: list[dict]) -> str:
    if not rows:
        return "no profiles found"
    out = [f"{'NAME':<16} {'SCOPE':<8} {'TOOLS':<32} FILE"]
    for row in rows:
        tools = ", ".join(f"{k} {v}" for k, v in row["tools"].items()) or "-"
        note = f"  (shadowed by {row['shadowed_by']})" if row["shadowed_by"] else ""
        if row["error"]:
            tools = "INVALID: " + row["error"]
        out.append(f"{row['name']:<16} {row['scope']:<8} {tools:<32} {row['file']}{note}")
    return "\n".join(out)


def render_request(profile, sha256: str) -> str:
    """What a project file asks for, shown before it is trusted."""
    out = [f"{profile.path} asks for:"]
    out.append("  command: " + (" ".join(profile.command) or "(none)"))
    out.append("  tools:   " + (", ".join(f"{t.tool} {t.describe()}" for t in profile.tools) or "(none)"))
    out += [f"  env:     {k}={v}" for k, v in profile.env] or ["  env:     (none)"]
    lim = profile.limits
    shown = [f"{k} {getattr(lim, k)}" for k in ("memory", "memory_swap", "cpu", "pids") if getattr(lim, k) is not None]
    out.append("  limits:  " + (", ".join(shown) or "(none)"))
    if len(profile.origins) > 1:
        out.append("  extends: " + " <- ".join(path for path, _ in reversed(profile.origins)))
    out.append(f"  sha256:  {sha256}")
    return "\n".join(out)


def render_ps(rows: list[dict]) -> str:
    if not rows:
        return "no running launches"
    import time

    out = [f"{'PROFILE':<16} {'PID':>7} {'UP':>8} {'BACKEND':<8} {'MEMORY':>10} {'CPU':>8} {'PIDS':>5}  {'ENTER':<24} CGROUP"]
    now = time.time()
    for r in rows:
        up = f"{now - r['started']:.0f}s" if r.get("started") else "-"
        cpu = f"{r['cpu_seconds']:.2f}s" if r.get("cpu_seconds") is not None else "-"
        pids = str(r["pids"]) if r.get("pids") is not None else "-"
        cgroup = r["cgroups"][0] if r["cgroups"] else "-"
        out.append(f"{r['profile']:<16} {r['pid']:>7} {up:>8} {r['backend']:<8} {size_or_dash(r.get('memory')):>10} {cpu:>8} {pids:>5}  {r.get('enter', '-'):<24} {cgroup}")
    return "\n".join(out)
