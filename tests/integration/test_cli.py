"""The envbox command as a user meets it: list, plan, doctor, and errors with exit codes."""

from __future__ import annotations

import json
import os

import pytest

from conftest import REPO, no_traceback

SHIPPED = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml"))


@pytest.mark.parametrize(
    "text,code,first_line",
    [
        ("comand: [x]\n", 125, "unknown key 'comand' in profile"),
        ("command: [x]\ncommand: [y]\n", 125, "duplicate key 'command' (first on line 1)"),
        ("tools:\n  python: 3.10\n", 125, "is read by YAML as the number 3.1"),
        ("a: [\n", 125, "invalid YAML"),
    ],
)
def test_profile_errors_are_one_line_with_a_hint(root_env, text, code, first_line):
    path = root_env.write_profile("broken", text)
    result = root_env.envbox("launch", "broken")
    assert result.returncode == code
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"envbox: {path}:") and first_line in lines[0], result.stderr
    assert all(l.startswith(("envbox: ", "hint: ")) for l in lines), result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_missing_profile(root_env):
    root_env.write_profile("chromium-app", 'command: ["true"]\n')
    result = root_env.envbox("launch", "chromium-ap")
    assert result.returncode == 125
    assert result.stderr.splitlines()[0] == "envbox: no profile named 'chromium-ap'"
    assert "did you mean 'chromium-app'" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("name", ["../etc/passwd", "-rf", "A B", "a/b", ".."])
def test_bad_profile_names_are_usage_errors(root_env, name):
    result = root_env.envbox("launch", "--", name) if name.startswith("-") else root_env.envbox("launch", name)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("envbox: bad profile name")
    no_traceback(result)


def test_unknown_command_is_a_usage_error(root_env):
    result = root_env.envbox("lunch", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("envbox: ")
    no_traceback(result)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_plans(root_env, name):
    result = root_env.envbox("plan", name, "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["profile"] == name and plan["scope"] == "bundled"
    assert plan["env"]["PATH"].startswith("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
    text = root_env.envbox("plan", name)
    assert text.returncode == 0 and f"profile  {name}" in text.stdout


def test_list_shows_scopes_and_shadowing(root_env):
    root_env.write_profile("py-host", "description: mine\ncommand: [python]\n")
    rows = json.loads(root_env.envbox("list", "--json").stdout)
    by = {(r["name"], r["scope"]): r for r in rows}
    assert by[("py-host", "user")]["shadowed_by"] is None
    assert by[("py-host", "bundled")]["shadowed_by"] == str(root_env.user_profiles / "py-host.yaml")
    assert ("chrome", "bundled") in by


def test_plan_command_replays_the_launch(env):
    """The sandbox command `plan` prints works when pasted into a shell."""
    import subprocess

    env.write_profile("replay", "command: [python, -c, 'import sys; print(sys.version_info[0])']\ntools:\n  python: {host: /usr/bin/python3.11}\n")
    assert env.envbox("launch", "replay").stdout.strip() == "3"  # builds the link layer
    plan = json.loads(env.envbox("plan", "replay", "--json").stdout)
    assert plan["sandbox_command"], plan
    result = env.cmd(["sh", "-c", plan["sandbox_command"]])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


def test_doctor_reports_each_check(env):
    result = env.envbox("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert {"python", "overlayfs", "cgroups"} <= set(checks)
    assert checks["overlayfs"]["status"] == "PASS", checks["overlayfs"]
    ns = "user namespaces" if env.mode == "rootless" else "mount namespaces"
    assert checks[ns]["status"] == "PASS"


@pytest.mark.parametrize(
    "shell,env_vars",
    [
        ("bash", {"_ENVBOX_COMPLETE": "complete_bash", "COMP_WORDS": "envbox launch py", "COMP_CWORD": "2"}),
        ("zsh", {"_ENVBOX_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "envbox launch py"}),
        ("fish", {"_ENVBOX_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": "envbox launch py", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}),
    ],
)
def test_completion_lists_profiles_and_ignores_project_files(env, shell, env_vars):
    project = env.home / "proj"
    project.mkdir()
    os.mkfifo(project / "envbox.yaml")  # reading it would block: completion must not touch it
    env.give(env.home)
    result = env.envbox(env=env_vars, cwd=str(project), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "py-host" in result.stdout
    assert not env.store.exists()


def test_show_completion_scripts(root_env):
    for shell in ("bash", "zsh", "fish"):
        result = root_env.envbox("--show-completion", shell)
        assert result.returncode == 0 and "_ENVBOX_COMPLETE" in result.stdout, (shell, result.stderr)


@pytest.mark.parametrize(
    "text,line,message,hint",
    [
        ('command: [x]\ntools:\n  python: "2.6"\n', 3, "no release of python matches '2.6'", "envbox catalog python"),
        ('command: [x]\ntools:\n  pyhton: "3"\n', 3, "no tool named 'pyhton'", "did you mean 'python'?"),
        ('command: [x]\ndescription: d\ntools:\n  node: "22"\n  pyton: "3"\n', 5, "no tool named 'pyton'", "did you mean 'python'?"),
    ],
)
def test_resolution_errors_name_file_line_and_a_suggestion(root_env, text, line, message, hint):
    path = root_env.write_profile("broken", text)
    for args in (["launch", "broken"], ["plan", "broken"]):
        result = root_env.envbox(*args)
        assert result.returncode == 125
        first, second = result.stderr.splitlines()
        assert first.startswith(f"envbox: {path}:{line}: {message}"), result.stderr
        assert second.startswith("hint: ") and hint in second, result.stderr


def test_catalog_of_an_unknown_tool_suggests_the_nearest(root_env):
    result = root_env.envbox("catalog", "pyton")
    assert result.returncode == 125
    assert result.stderr.splitlines() == [
        "envbox: no tool named 'pyton' in the catalog (known: cmake, gcc, go, java, node, python, ruby)",
        "hint: did you mean 'python'? (run 'envbox catalog' to list tools and releases)",
    ]


def _columns(header: str) -> list[int]:
    import re

    return [m.start() for m in re.finditer(r"\S+", header)]


@pytest.mark.parametrize("command", [["catalog"], ["list"], ["layers"]])
def test_tables_have_a_header_and_fit_the_terminal(root_env, command):
    root_env.write_profile("bad", "tools:\n  python: 3.10\n")  # an INVALID row in list
    assert root_env.envbox("build", "py-host").returncode == 0  # a row in layers
    result = root_env.envbox(*command, env={"COLUMNS": "72"})
    assert result.returncode in (0, 1), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == lines[0].upper() and len(lines[0].split()) >= 3, lines[0]
    starts = _columns(lines[0])
    words = set(" ".join(lines).split())
    for line in lines[1:]:
        # (a last column holding a path may run past the edge: it is the last thing on the line)
        assert len(line[: starts[-1]].rstrip()) <= 72, f"wider than the terminal: {line!r}"
        # every cell starts at its column: nothing spills into the next column
        for start in starts[1:]:
            assert start >= len(line) or line[start - 1] == " ", (line, starts)
    if command == ["catalog"]:
        assert "libpython3.11-stdlib" in words, "a cell was cut mid-word"
    if command == ["list"]:
        bad = [l for l in lines if l.startswith("bad ")][0]
        assert bad.count("bad.yaml") == 1 and "INVALID: line 2:" in bad, result.stdout


def test_trust_and_plan_show_sizes_alike(root_env):
    proj = root_env.home / "proj"
    proj.mkdir()
    (proj / "envbox.yaml").write_text("command: [x]\nlimits: {memory: 512M, memory_swap: 1G, cpu: 1.5}\n")
    shown = root_env.envbox("trust", cwd=str(proj))
    assert "limits:  memory 512 MiB, memory_swap 1 GiB, cpu 1.5" in shown.stdout, shown.stdout
    plan = root_env.envbox("plan", cwd=str(proj))
    assert "limits   memory 512 MiB, memory_swap 1 GiB, cpu 1.5" in plan.stdout, plan.stdout


def test_which_names_the_pinned_interpreter_that_runs_a_host_script(env):
    """A host script (the host's /usr/bin/pip3 is one) keeps its path, but inside the app its
    #! line reaches the profile's interpreter: `which` says so. Root and rootless."""
    prefix = env.home / "py"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3").write_text("#!/bin/sh\necho layer python3\n")
    (prefix / "bin" / "python3").chmod(0o755)
    scripts = env.home / "scripts"
    scripts.mkdir()
    for name, head in {"abs": "#!/usr/bin/python3 -I", "env": "#!/usr/bin/env python3", "sh": "#!/bin/sh", "none": "echo"}.items():
        (scripts / name).write_text(head + "\necho hi\n")
        (scripts / name).chmod(0o755)
    env.give(env.home)
    env.write_profile("py", f"command: [sh, -c]\ntools:\n  python: {{dir: {prefix}}}\n")
    lines = {}
    for name in ("abs", "env", "sh", "none"):
        result = env.envbox("which", "py", str(scripts / name))
        assert result.returncode == 0, result.stderr
        lines[name] = result.stdout.strip()
    assert lines["abs"].startswith(f"{scripts}/abs: the host; run by /usr/bin/python3: ") and str(prefix / "bin/python3") in lines["abs"], lines
    assert lines["env"].startswith(f"{scripts}/env: the host; run by /usr/bin/python3: ") and str(prefix / "bin/python3") in lines["env"], lines
    assert lines["sh"] == f"{scripts}/sh: the host" and lines["none"] == f"{scripts}/none: the host", lines
    # What the app really runs agrees.
    ran = env.envbox("launch", "py", "--", f"{scripts}/abs; {scripts}/env")
    assert ran.returncode == 0 and ran.stdout.splitlines() == ["layer python3", "layer python3"], (ran.stdout, ran.stderr)
