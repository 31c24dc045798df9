"""The layering is a contract: import-linter's contracts (pyproject.toml) hold, and the warm
launch path loads exactly the envbox modules it needs and none of the heavy libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, envbox_bin, need

# What `envbox launch NAME` loads of envbox when the plan is cached: the entry point, the cache
# reader, the digests it compares, the supervisor and the sandbox it runs in-process. A module
# added here is a cost paid on every launch: add it deliberately.
WARM_MODULES = {
    "envbox",
    "envbox.main",
    "envbox.core",
    "envbox.core.digests",
    "envbox.runtime",
    "envbox.runtime.plancache",
    "envbox.runtime.supervisor",
    "envbox.runtime.sandbox",
    "envbox.core.sandboxargs",
    "envbox.fsio",
}
HEAVY = {"hashlib", "json", "yaml", "typer", "rich", "platformdirs", "dataclasses", "pathlib"}


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    need(lint.exists(), f"import-linter is not installed next to {sys.executable} (tests/run installs it)")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _imported(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output (`import time: self | cumulative | name`)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if not name.startswith("imported"):
                names.add(name)
    return names


def test_warm_launch_loads_exactly_the_launch_modules(root_env):
    env = root_env
    env.write_profile("warm", "command: [/bin/true]\n")
    first = env.envbox("launch", "warm")
    assert first.returncode == 0, first.stderr  # the full CLI prepares and caches the plan
    launcher = envbox_bin()
    python = open(launcher).readline()[2:].split()[0]
    traced = env.cmd([python, "-SI", "-X", "importtime", launcher, "launch", "warm"], env={"ENVBOX_TRACE": "1"})
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert "fast path (cached plan)" in traced.stderr
    loaded = _imported(traced.stderr)
    envbox_modules = {m for m in loaded if m == "envbox" or m.startswith("envbox.")}
    assert envbox_modules == WARM_MODULES, f"extra: {envbox_modules - WARM_MODULES}, missing: {WARM_MODULES - envbox_modules}"
    assert not (loaded & HEAVY), f"the warm path imported {sorted(loaded & HEAVY)}"


def test_a_cold_cli_import_graph_has_no_cycle():
    """Checked by the contracts too; here without import-linter, straight from the sources."""
    import ast

    package = REPO / "envbox"
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("envbox"):
                assert node.level == 0, f"{path}: relative import"
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if (package / Path(*full.split(".")[1:])).with_suffix(".py").exists() else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("envbox"))
    seen: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, stack: list[str]) -> None:
        seen[name] = 1
        for dep in sorted(graph.get(name, ())):
            if dep == name or dep not in graph:
                continue
            assert seen.get(dep) != 1, "import cycle: " + " -> ".join(stack + [name, dep])
            if dep not in seen:
                visit(dep, stack + [name])
        seen[name] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [])


def test_exit_codes_have_one_meaning():
    """The sandbox cannot import envbox (it runs alone under -SI), so it defines the codes the
    launch path returns; the supervisor uses the sandbox's; the CLI's must be the same."""
    from envbox.core import errors
    from envbox.runtime import sandbox, supervisor

    assert (sandbox.EXIT_ENVBOX, sandbox.EXIT_NOEXEC, sandbox.EXIT_NOTFOUND) == (errors.EXIT_ENVBOX, errors.EXIT_NOEXEC, errors.EXIT_NOTFOUND) == (125, 126, 127)
    assert supervisor.EXIT_ENVBOX == errors.EXIT_ENVBOX


def test_validating_a_catalog_loads_no_downloader_or_extractor():
    """The kinds' spec checks are pure (sources/specs.py): a catalog is validated without the
    downloader (http.client, urllib.request) or the extractor (tarfile, ctypes)."""
    code = (
        "import sys\n"
        "from envbox.core.catalog import builtin_dir, load_catalog\n"
        "from envbox.sources import checks\n"
        "assert load_catalog((builtin_dir(),), checks()).releases\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert not loaded & {"envbox.sources.fetch", "envbox.sources.extract", "envbox.store.build", "http.client", "urllib.request", "tarfile", "ctypes"}, sorted(loaded)


def test_every_subpackage_is_installed():
    """pyproject lists the packages by name: one left out installs nowhere, and the installed
    envbox fails with ModuleNotFoundError (the tests importing from the checkout would not see it)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "envbox").rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found <= listed, f"not in pyproject's packages: {sorted(found - listed)}"
