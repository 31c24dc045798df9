"""A Kubernetes Pod manifest for an exported image, with the profile's limits. Pure."""

from __future__ import annotations

from envbox.core.names import is_valid_name


def memory_quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity: Gi/Mi/Ki when exact, else plain bytes."""
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def cpu_quantity(cores: float) -> str:
    """Cores as millicores ("1500m"); at least 1m."""
    return f"{max(1, round(cores * 1000))}m"


def pod_name(profile: str) -> str:
    """A DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters."""
    name = "".join(c if c.isalnum() else "-" for c in f"envbox-{profile}".lower()).strip("-")[:63].rstrip("-")
    return name or "envbox"


def pod_manifest(profile: str, image: str, limits: dict, annotations: dict | None = None) -> dict:
    """The Pod: one container running the image's entrypoint, limits as resources.limits.

    Kubernetes has no per-container pid limit (the kubelet's podPidsLimit is node-wide), so
    `pids` is recorded as an annotation; memory_swap has no equivalent either."""
    assert is_valid_name(profile)
    res = {}
    if limits.get("memory") is not None:
        res["memory"] = memory_quantity(int(limits["memory"]))
    if limits.get("cpu") is not None:
        res["cpu"] = cpu_quantity(float(limits["cpu"]))
    notes = dict(annotations or {})
    if limits.get("pids") is not None:
        notes["envbox/pids-limit"] = str(limits["pids"])
    container = {"name": pod_name(profile)[:63], "image": image}
    if res:
        container["resources"] = {"limits": res}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name(profile)},
           "spec": {"restartPolicy": "Never", "containers": [container]}}
    if notes:
        pod["metadata"]["annotations"] = notes
    return pod
