"""Every command of the README's Usage section, run as written against the bundled profiles;
the columns each comment names are the header each command prints; every command of
`envbox --help` appears in Usage."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import REPO, no_traceback, private_cache

pytestmark = [pytest.mark.network, pytest.mark.slow]

PROJECT = "command: [python3, -c, \"print('project-command')\"]\ntools:\n  python: {host: /usr/bin/python3.11}\n"
MAKEFILE = "test:\n\t@python -c 'print(\"tests-ran\")'\n"
LEGACY = "#!/usr/bin/env python\nimport sys\nprint('legacy %d.%d' % sys.version_info[:2])\n"

# README line (command part) -> the argv lists run for it, and the exit codes they may give.
# Optional parts ([--json]) run both ways; a test fails when README and this table disagree.
RUNS = {
    "envbox launch chrome": ([["launch", "chrome"]], {0, 127}),  # 127: google-chrome not installed
    "envbox launch py-host -- -c 'import sys; print(sys.version)'": ([["launch", "py-host", "--", "-c", "import sys; print(sys.version)"]], {0}),
    "envbox launch": ([["launch"]], {0}),
    "envbox run --profile chrome -- ./legacy-script.py": ([["run", "--profile", "chrome", "--", "./legacy-script.py"]], {0}),
    "envbox run -- make test": ([["run", "--", "make", "test"]], {0}),
    "envbox shell": ([["shell"]], {0}),
    "envbox plan chrome [--json]": ([["plan", "chrome"], ["plan", "chrome", "--json"]], {0}),
    "envbox list [--json]": ([["list"], ["list", "--json"]], {0}),
    "envbox doctor [--json]": ([["doctor"], ["doctor", "--json"]], {0, 1}),
    "envbox catalog [TOOL] [--json]": ([["catalog"], ["catalog", "python"], ["catalog", "--json"]], {0}),
    "envbox build chrome": ([["build", "chrome"]], {0}),
    "envbox layers [--json]": ([["layers"], ["layers", "--json"]], {0}),
    "envbox gc [--dry-run]": ([["gc", "--dry-run"], ["gc"]], {0}),
    "envbox verify": ([["verify"]], {0}),
    "envbox repair": ([["repair"]], {0}),
    "envbox lock myapp": ([["lock", "myapp"]], {0}),
    "envbox which chrome /usr/bin/python": ([["which", "chrome", "/usr/bin/python"]], {0}),
    "envbox ps [--json]": ([["ps"], ["ps", "--json"]], {0}),
    "envbox trust [--yes]": ([["trust", "--yes"], ["trust"]], {0}),
    "envbox trust --revoke": ([["trust", "--revoke"]], {0}),
    "envbox desktop install chrome [--from FILE.desktop]": ([["desktop", "install", "chrome"]], {0}),
    "envbox desktop list": ([["desktop", "list"]], {0}),
    "envbox desktop remove chrome": ([["desktop", "remove", "chrome"]], {0}),
    "envbox desktop sync": ([["desktop", "sync"]], {0}),
    "envbox bin install chrome [--as CMD]": ([["bin", "install", "chrome"], ["bin", "install", "chrome", "--as", "chrome-py2"]], {0}),
    "envbox bin list | remove CMD": ([["bin", "list"], ["bin", "remove", "chrome"], ["bin", "remove", "chrome-py2"]], {0}),
    # No launch of chrome runs here (google-chrome is not installed): the refusal is one line.
    "envbox enter chrome|PID [-- CMD]": ([["enter", "chrome"]], {125}),
    "envbox export chrome --oci OUT [--base BASE] [--kube]": ([["export", "chrome", "--oci", "chrome-oci", "--kube"]], {0}),
    "envbox export chrome --systemd [-o FILE]": ([["export", "chrome", "--systemd", "-o", "chrome.service"]], {0}),
    "envbox completion bash": ([["completion", "bash"]], {0}),
    "envbox --version": ([["--version"], ["-h"], ["launch", "-h"]], {0}),
}


OUTPUT = {
    ("launch",): ["project-command"],
    ("run", "--", "make", "test"): ["tests-ran"],
    ("run", "--profile", "chrome", "--", "./legacy-script.py"): ["legacy 2.7"],
    ("launch", "py-host", "--", "-c", "import sys; print(sys.version)"): ["3.11"],
    ("which", "chrome", "/usr/bin/python"): ["python 2.7.18"],
    ("lock", "myapp"): ["myapp.lock"],
    ("completion", "bash"): ["_ENVBOX_COMPLETE"],
}


def usage_lines() -> list[tuple[str, str]]:
    """(command, comment) of each line of the README's Usage block."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Usage\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        if line.strip():
            command, _, comment = line.partition("  #")
            out.append((command.strip(), comment.strip()))
    return out


def test_the_table_above_is_the_readme():
    assert [c for c, _ in usage_lines()] == list(RUNS)


def test_usage_names_every_command():
    from envbox.cli.common import build_command
    import envbox.cli.commands  # noqa: F401  (registers the commands)

    named = {shlex.split(c)[1] for c, _ in usage_lines() if len(shlex.split(c)) > 1 and not shlex.split(c)[1].startswith("-")}
    assert set(build_command().commands) <= named


def _header(columns_comment: str) -> list[str] | None:
    """'profiles envbox sees: NAME, SCOPE, TOOLS, FILE' -> ['NAME', 'SCOPE', 'TOOLS', 'FILE']."""
    words = re.findall(r"\b[A-Z]{2,}\b", columns_comment.split(":")[-1])
    return words if len(words) >= 2 else None


def test_every_usage_command_runs_as_written(root_env):
    env = root_env
    private_cache(env)  # `envbox gc` below prunes it
    proj = env.home / "legacy-app"
    proj.mkdir()
    (proj / "envbox.yaml").write_text(PROJECT)
    (proj / "Makefile").write_text(MAKEFILE)
    (proj / "legacy-script.py").write_text(LEGACY)
    (proj / "legacy-script.py").chmod(0o755)
    env.write_profile("myapp", (REPO / "profiles" / "chrome.yaml").read_text().replace("name: chrome\n", ""))
    (env.base / "bin").mkdir()
    environ = {"SHELL": "/bin/true", "COLUMNS": "120", "ENVBOX_BIN_DIR": str(env.base / "bin")}
    # trust first: the project lines above it need it (the README says so below Usage)
    order = sorted(RUNS, key=lambda c: (not c.startswith("envbox trust ["), c == "envbox trust --revoke"))
    for line in order:
        runs, codes = RUNS[line]
        comment = dict(usage_lines())[line]
        for argv in runs:
            result = env.envbox(*argv, cwd=str(proj), env=environ, timeout=600)
            assert result.returncode in codes, (line, argv, result.stdout[-2000:], result.stderr[-2000:])
            no_traceback(result)
            assert not result.stderr.startswith("envbox: unknown option"), result.stderr
            header = _header(comment)
            if header and "--json" not in argv and result.stdout.strip() and not result.stdout.startswith("no "):
                assert result.stdout.splitlines()[0].split() == header, (line, result.stdout.splitlines()[0])
            if "--json" in argv:
                json.loads(result.stdout)
            for expected in OUTPUT.get(tuple(argv), ()):
                assert expected in result.stdout, (argv, result.stdout)
