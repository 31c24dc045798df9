"""What a newcomer meets first: install, --version/-h, the README's test command, usage errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, remove_tree, _make_env, envbox_bin, need, no_traceback


@pytest.fixture
def user_env():
    e = _make_env("rootless")
    yield e
    e.stop_all()
    remove_tree(e.base)


def _readme_block(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = body.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


# --- 1, 2: the installed launcher and the source tree -------------------------------------


def _launcher_sites(launcher: Path) -> list[str]:
    match = re.search(r"^sys\.path\[:0\] = (\[.*\])$", launcher.read_text(), re.M)
    assert match, launcher.read_text()
    import ast

    return ast.literal_eval(match.group(1))


def test_test_venv_launcher_runs_only_the_installed_package():
    """tests/run writes the launcher from inside the checkout: the checkout must not be on it."""
    prefix = os.environ.get("ENVBOX_TEST_PREFIX")
    need(bool(prefix), "no envbox install at ENVBOX_TEST_PREFIX (tests/run makes one)")
    sites = _launcher_sites(Path(prefix) / "bin" / "envbox")
    assert sites and all(Path(s).is_relative_to(prefix) for s in sites), sites
    assert str(REPO) not in (Path(prefix) / "bin" / "envbox").read_text()


@pytest.mark.network
@pytest.mark.slow
def test_install_inside_and_outside_the_checkout_gives_the_same_launcher(user_env):
    """A fresh clone, installed as the README says (./install.sh from inside it) and from
    outside it: the same launcher, naming only the venv, and nothing written into the clone.
    As the test user: root's install would replace the machine's /usr/local/bin/envbox."""
    env = user_env
    need(shutil.which("git") is not None, "needs git")
    clone = env.base / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env.give(env.base)
    env.vars["PIP_CACHE_DIR"] = str(env.base / "pip-cache")
    launcher = env.home / ".local" / "share" / "envbox" / "venv" / "bin" / "envbox"
    texts = []
    for script, cwd in (("./install.sh", clone), (str(clone / "install.sh"), env.home)):
        result = env.cmd([script], cwd=str(cwd), timeout=600)
        assert result.returncode == 0, result.stderr
        texts.append(launcher.read_text())
        assert str(clone) not in texts[-1]
        assert _launcher_sites(launcher) and all(Path(s).is_relative_to(launcher.parent.parent) for s in _launcher_sites(launcher))
        version = env.cmd([str(env.home / ".local" / "bin" / "envbox"), "--version"], cwd=str(clone))
        assert version.stdout.startswith("envbox "), version.stderr
        # The bundled profiles come from the installed package, not from the checkout.
        listed = env.cmd([str(launcher), "list", "--json"], cwd=str(clone))
        assert '"py-host"' in listed.stdout and str(clone) not in listed.stdout, listed.stderr
    assert texts[0] == texts[1]
    left = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True)
    assert left.stdout == "", f"install.sh wrote into the source tree:\n{left.stdout}"


# --- 3: --version, -h ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--version"], ["-V"]])
def test_version(root_env, args):
    from envbox import __version__

    result = root_env.envbox(*args)
    assert result.returncode == 0 and result.stdout == f"envbox {__version__}\n", result.stderr


@pytest.mark.parametrize("args", [["-h"], ["run", "-h"], ["desktop", "-h"], ["desktop", "install", "-h"]])
def test_short_help(root_env, args):
    result = root_env.envbox(*args)
    assert result.returncode == 0 and result.stdout.startswith("Usage: envbox"), result.stderr


# --- 4: the README's test command ---------------------------------------------------------


def _bin_without_sudo(base: Path) -> str:
    """A PATH with what tests/run needs before it decides how to run, and no sudo."""
    bindir = base / "bin-nosudo"
    bindir.mkdir()
    for tool in ("bash", "env", "dirname", "sed", "id"):
        os.symlink(shutil.which(tool), bindir / tool)
    return str(bindir)


def test_readme_test_command_needs_no_sudo_as_root(root_env):
    lines = _readme_block("Set-up")
    assert lines[1].split()[0] == "tests/run", lines
    result = subprocess.run([str(REPO / lines[1].split()[0]), "--help"], env={"PATH": _bin_without_sudo(root_env.base)},
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "tests/run" in result.stdout, result.stderr


def test_tests_run_as_a_user_without_sudo_says_what_to_do(user_env):
    result = user_env.cmd([str(REPO / "tests" / "run")], env={"PATH": _bin_without_sudo(user_env.base)}, cwd="/")
    assert result.returncode == 2
    assert "need root" in result.stderr and "sudo" in result.stderr, result.stderr


# --- 5: unknown options -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,suggestion",
    [
        (["run", "--profile", "py-host", "--bogus", "--", "true"], None),
        (["run", "--profil", "py-host", "--", "true"], "--profile"),
        (["launch", "py-host", "--bogus"], None),
        (["launch", "py-host", "--frozn"], "--frozen"),
        (["shell", "--profle", "py-host"], "--profile"),
        (["list", "--jsn"], "--json"),
    ],
)
def test_unknown_options_are_usage_errors_warm_or_cold(root_env, args, suggestion):
    for _ in range(2):  # the second time with a cached plan for py-host (the fast path)
        warm = root_env.envbox("launch", "py-host", "--", "-c", "pass")
        assert warm.returncode == 0, warm.stderr
        result = root_env.envbox(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert lines[0].startswith("envbox: unknown option "), result.stderr
        assert lines[1].startswith("hint: ")
        if suggestion:
            assert f"did you mean {suggestion}?" in lines[1]
        assert result.stdout == ""
        no_traceback(result)


def test_after_double_dash_everything_is_the_apps(root_env):
    for _ in range(2):
        result = root_env.envbox("launch", "py-host", "--", "-c", "import sys; print(sys.argv[1:])", "--bogus")
        assert result.returncode == 0 and result.stdout == "['--bogus']\n", result.stderr
        result = root_env.envbox("run", "--profile", "py-host", "--", "sh", "-c", "echo $0", "--frozen")
        assert result.returncode == 0 and result.stdout == "--frozen\n", result.stderr


# --- 7: shell --allow-unenforced; launch with no name runs the project's command ------------


def test_shell_takes_allow_unenforced(root_env):
    result = root_env.envbox("shell", "--allow-unenforced", "--profile", "py-host", env={"SHELL": "/bin/true"})
    assert result.returncode == 0, result.stderr


def test_launch_without_a_name_runs_the_projects_command(env):
    proj = env.home / "src" / "app"
    proj.mkdir(parents=True)
    (proj / "envbox.yaml").write_text("command: [sh, -c, 'echo project-command \"$@\"', sh]\ntools:\n  python: {host: /usr/bin/python3.11}\n")
    (proj / "envbox.yaml").chmod(0o644)
    env.give(env.home)
    assert env.envbox("trust", "--yes", cwd=str(proj)).returncode == 0
    for warm in (False, True):
        result = env.envbox("launch", cwd=str(proj), env={"ENVBOX_TRACE": "1"})
        assert result.returncode == 0 and result.stdout == "project-command\n", result.stderr
        assert ("fast path" in result.stderr) is warm, result.stderr
    (proj / "envbox.yaml").write_text("tools:\n  python: {host: /usr/bin/python3.11}\n")
    assert env.envbox("trust", "--yes", cwd=str(proj)).returncode == 0
    for _ in range(2):
        result = env.envbox("launch", cwd=str(proj))
        assert result.returncode == 125 and "has no command" in result.stderr, result.stderr


# --- 8: --frozen is one rule --------------------------------------------------------------


@pytest.mark.parametrize("tools", ["  python: {host: /usr/bin/python3.11}\n", "  python: \"3.11\"\n"])
def test_frozen_refuses_every_profile_without_a_lock(root_env, tools):
    root_env.write_profile("nolock", f"command: [/usr/bin/python, -c, pass]\ntools:\n{tools}")
    result = root_env.envbox("launch", "--frozen", "nolock")
    assert result.returncode == 125, result.stderr
    assert "--frozen: nolock has no lock file" in result.stderr
    assert "refuse if it has none" in " ".join(root_env.envbox("launch", "-h").stdout.split())


# --- 11: help -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["desktop", "--help"]])
def test_every_commands_first_line_fits(root_env, args):
    result = root_env.envbox(*args, env={"COLUMNS": "80"})
    commands = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert commands and not [line for line in commands if line.rstrip().endswith("...")], result.stdout


@pytest.mark.parametrize("command", ["launch", "which", "desktop install", "catalog"])
def test_argument_help_is_plain_text(root_env, command):
    result = root_env.envbox(*command.split(), "--help")
    assert result.returncode == 0
    assert "\\[" not in result.stdout, result.stdout
    arguments = result.stdout.split("Arguments:\n", 1)[1].split("\n\n", 1)[0]
    names = [line for line in arguments.splitlines() if not line.startswith("   ")]  # not continuations
    assert names and all(len(line.split(None, 1)) == 2 for line in names), arguments


# --- 14: completion -----------------------------------------------------------------------


def _complete_in_bash(env, words: list[str]) -> list[str]:
    script = env.envbox("completion", "bash")
    assert script.returncode == 0, script.stderr
    path = env.base / "envbox-completion.bash"
    path.write_text(script.stdout)
    line = " ".join(f"'{w}'" for w in words)
    result = env.cmd(["bash", "-c", f'source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
                      f'_envbox_completion {envbox_bin()}; printf "%s\\n" "${{COMPREPLY[@]}}"'])
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_scripts_complete_names(root_env):
    env = root_env
    assert "chrome" in _complete_in_bash(env, ["envbox", "launch", ""])
    assert _complete_in_bash(env, ["envbox", "catalog", "py"]) == ["python"]
    assert _complete_in_bash(env, ["envbox", "which", "py-"]) == ["py-host"]
    assert env.envbox("desktop", "install", "py-host").returncode == 0
    assert _complete_in_bash(env, ["envbox", "desktop", "remove", ""]) == ["py-host"]
    assert sorted(_complete_in_bash(env, ["envbox", "completion", ""])) == ["bash", "fish", "zsh"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_for_the_shell_named(root_env, shell):
    result = root_env.envbox("completion", shell, env={"SHELL": "/bin/sh"})
    assert result.returncode == 0 and "_ENVBOX_COMPLETE" in result.stdout, result.stderr


def test_completion_for_an_unknown_shell_is_a_usage_error(root_env):
    result = root_env.envbox("completion", "sh")
    assert result.returncode == 2 and "bash, zsh and fish" in result.stderr


# --- 15: repair ---------------------------------------------------------------------------


def test_a_damaged_layer_is_never_launched_and_repair_rebuilds_it(env):
    assert env.envbox("launch", "py-host", "--", "-c", "pass").returncode == 0  # built, plan cached
    (digest,) = os.listdir(env.store / "layers")
    layer = env.store / "layers" / digest
    os.chmod(layer, 0o755)
    (layer / "planted").write_text("not from the release\n")  # what a half-finished rm or an edit leaves
    env.give(layer)
    checked = env.envbox("verify")
    assert checked.returncode == 1 and "envbox repair" in checked.stderr, checked.stderr
    for _ in range(2):  # the cached plan too: never the damaged layer
        launched = env.envbox("launch", "py-host", "--", "-c", "print('ran')")
        assert launched.returncode == 125 and "failed verification" in launched.stderr, launched.stdout + launched.stderr
        assert "ran" not in launched.stdout
    repaired = env.envbox("repair")
    assert repaired.returncode == 0, repaired.stderr
    assert f"removed {digest[:16]} (damaged)" in repaired.stdout and "rebuilt py-host" in repaired.stdout
    assert env.envbox("verify").returncode == 0
    assert not (env.store / "layers" / digest / "planted").exists()
    launched = env.envbox("launch", "py-host", "--", "-c", "print('ran')")
    assert launched.returncode == 0 and launched.stdout == "ran\n", launched.stderr
    assert env.envbox("repair").stderr.strip() == "repair: nothing to repair"


# --- 9: progress when output is not a terminal --------------------------------------------


def test_a_build_says_what_it_does_when_output_is_redirected(root_env):
    result = root_env.envbox("build", "py-host")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "envbox: building python -> /usr/bin/python3.11 (host)", lines
    assert lines[-1].startswith("envbox: built python -> /usr/bin/python3.11 (host): ") and lines[-1].endswith(" s"), lines
    assert root_env.envbox("build", "py-host").stderr == "", "nothing to build, nothing to say"
