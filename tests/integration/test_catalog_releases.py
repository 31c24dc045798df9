"""Every shipped catalog release is built by envbox and run in a namespace (network)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import shared_cache
from envbox.core.catalog import builtin_dir, load_catalog
from envbox.sources import checks

pytestmark = [pytest.mark.network, pytest.mark.slow]

SHIPPED = sorted((r.tool, r.version) for r in load_catalog((builtin_dir(),), checks()).releases)

SMOKE = {
    "python": ("/usr/bin/python -c 'import sys, ssl, json, sqlite3, zlib, ctypes; print(sys.version.split()[0])'", "{v}"),
    "node": ("node -e 'console.log(process.version)' && npm --version >/dev/null && echo npm-ok", "v{v}\nnpm-ok"),
    "cmake": ("cmake --version | head -1", "cmake version {v}"),
    "gcc": ("gcc -dumpfullversion && echo 'int main(void){return 0;}' > /tmp/t.c && cc -o /tmp/t /tmp/t.c && /tmp/t && echo cc-ok", "{v}\ncc-ok"),
    "java": ("java -XX:-UsePerfData -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.version = //p' | cut -d. -f1-3", "{v}"),
    "ruby": ("ruby -e 'puts RUBY_VERSION' && gem --version >/dev/null && bundle --version >/dev/null && echo gems-ok", "{v}\ngems-ok"),
    "go": ("go env GOVERSION", "go{v}"),
}
# Built and run in CI by test_toolchains.py / test_more_tools.py (one pair per family); here
# only with -m matrix, to keep CI's network time within its budget.
COVERED_ELSEWHERE = {"gcc", "java", "ruby", "go", ("python", "3.14.10"), ("node", "24.19.0")}


def _param(tool, version):
    opt_in = tool in COVERED_ELSEWHERE or (tool, version) in COVERED_ELSEWHERE
    return pytest.param(tool, version, marks=[pytest.mark.matrix] if opt_in else [], id=f"{tool}-{version}")


def test_every_tool_has_a_smoke_command():
    assert {tool for tool, _ in SHIPPED} <= set(SMOKE)


@pytest.mark.parametrize("tool,version", [_param(t, v) for t, v in SHIPPED])
def test_shipped_release_builds_and_runs(root_env, tool, version):
    env = root_env
    shared_cache(env)
    env.write_profile("rel", f"command: [sh, -c]\ntools:\n  {tool}: \"=={version}\"\n")
    script, expected = SMOKE[tool]
    result = env.envbox("launch", "rel", "--", script, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.format(v=version)


def test_node_12_and_22_side_by_side(env):
    """Two apps, two Nodes, at the same time; npm works in both."""
    shared_cache(env)
    env.write_profile("n12", 'command: [sh, -c]\ntools:\n  node: "12"\n')
    env.write_profile("n22", 'command: [sh, -c]\ntools:\n  node: "22"\n')
    for name in ("n12", "n22"):
        assert env.envbox("build", name, timeout=900).returncode == 0
    probe = "node -e 'console.log(process.version, typeof [].at)'; npm --version"
    gate = env.home / "gate"
    old = env.envbox_popen("launch", "n12", "--", f"{probe}; while [ ! -e {gate} ]; do sleep 0.02; done",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        new = env.envbox("launch", "n22", "--", probe)
        assert old.poll() is None
    finally:
        gate.touch()
        out, err = old.communicate(timeout=60)
    assert new.returncode == 0 and old.returncode == 0, new.stderr + err
    assert out.splitlines()[0] == "v12.22.12 undefined" and out.splitlines()[1].startswith("6.")
    assert new.stdout.splitlines()[0] == "v22.20.0 function" and new.stdout.splitlines()[1].startswith("10.")
