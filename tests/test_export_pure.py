"""The pure parts of `envbox export`: Kubernetes quantities and Pod, the OCI image config."""

from __future__ import annotations

import pytest

from envbox.export import kube
from envbox.export.oci import image_config


@pytest.mark.parametrize("n, expected", [
    (64 << 20, "64Mi"), (2 << 30, "2Gi"), (1536 << 10, "1536Ki"), (1000, "1000"), (3 << 30 | 1 << 20, "3073Mi"),
])
def test_memory_quantity(n, expected):
    assert kube.memory_quantity(n) == expected


@pytest.mark.parametrize("cores, expected", [(1.5, "1500m"), (0.01, "10m"), (2, "2000m"), (0.0001, "1m")])
def test_cpu_quantity(cores, expected):
    assert kube.cpu_quantity(cores) == expected


@pytest.mark.parametrize("limits, resources, notes", [
    ({"memory": 256 << 20, "cpu": 0.5, "pids": 100, "memory_swap": None}, {"limits": {"memory": "256Mi", "cpu": "500m"}}, {"envbox/pids-limit": "100"}),
    ({"memory": None, "cpu": None, "pids": None}, None, None),
])
def test_pod_manifest(limits, resources, notes):
    pod = kube.pod_manifest("my.app_1", "localhost/envbox/my.app_1:abc", limits)
    container = pod["spec"]["containers"][0]
    assert pod["metadata"]["name"] == "envbox-my-app-1" == container["name"]
    assert container["image"] == "localhost/envbox/my.app_1:abc"
    assert container.get("resources") == resources
    assert pod["metadata"].get("annotations") == notes
    assert pod["spec"]["restartPolicy"] == "Never"


def test_image_config_keeps_the_base_and_adds_the_profile():
    base = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin", "LANG=C"], "Cmd": ["bash"], "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:base"]}, "history": [{"created_by": "base"}]}
    out = image_config(base, argv=["python", "-V"], env={"PATH": "/usr/bin", "X": "1"}, labels={"org.envbox.profile": "p"},
                       diff_ids=["sha256:l1"], history=[{"created_by": "envbox"}])
    assert out["config"]["Env"] == ["PATH=/usr/bin", "LANG=C", "X=1"]
    assert out["config"]["Entrypoint"] == ["python", "-V"] and "Cmd" not in out["config"]
    assert out["config"]["Labels"] == {"a": "b", "org.envbox.profile": "p"}
    assert out["rootfs"]["diff_ids"] == ["sha256:base", "sha256:l1"]
    assert [h["created_by"] for h in out["history"]] == ["base", "envbox"]
    assert base["config"]["Cmd"] == ["bash"], "the base's config is not changed in place"
    no_command = image_config(base, argv=[], env={}, labels={}, diff_ids=[], history=[])
    assert no_command["config"]["Cmd"] == ["bash"] and "Entrypoint" not in no_command["config"]
