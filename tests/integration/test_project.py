"""Per-project envbox.yaml: discovery, trust, extends; root and rootless."""

from __future__ import annotations

import os

import pytest

from conftest import no_traceback

PROJECT = "command: [sh, -c, 'echo project-ran']\ntools:\n  python: {host: /usr/bin/python3.11}\nenv: {WHO: project}\n"


def make_project(env, text=PROJECT, name="envbox.yaml"):
    proj = env.home / "src" / "legacy-app"
    (proj / "deep" / "er").mkdir(parents=True)
    (proj / name).write_text(text)
    (proj / name).chmod(0o644)
    env.give(env.home)
    return proj


def run_in(env, cwd, *args):
    return env.envbox(*args, cwd=str(cwd))


def test_untrusted_project_never_acts(env):
    proj = make_project(env)
    for args in (["run", "--", "true"], ["shell"], ["build"], ["lock"], ["launch"]):
        result = run_in(env, proj, *args)
        assert result.returncode == 125, (args, result.stderr)
        assert "is not trusted" in result.stderr and "envbox trust" in result.stderr, result.stderr
        no_traceback(result)
    assert not env.store.exists(), "nothing may be built for an untrusted file"


def test_plan_of_an_untrusted_project_shows_it_and_builds_nothing(env):
    proj = make_project(env, PROJECT.replace("tools:\n", "tools:\n  node: \"22\"\n") + "limits: {memory: 512M}\n")
    result = run_in(env, proj, "plan")
    assert result.returncode == 0, result.stderr
    assert "profile  legacy-app  (project:" in result.stdout and "memory 512 MiB" in result.stdout
    assert "not built yet" in result.stdout
    assert "is not trusted" in result.stderr and "nothing was built or run" in result.stderr
    data = __import__("json").loads(run_in(env, proj, "plan", "--json").stdout)
    assert data["trusted"] is False
    assert not env.store.exists(), "plan of an untrusted file must build nothing"
    assert not (env.home / ".cache" / "envbox" / "downloads").exists(), "... and download nothing"
    assert run_in(env, proj, "run", "--", "true").returncode == 125


def _on_a_terminal(env, cwd, args, answer: bytes) -> tuple[int, str]:
    """Run envbox with a pseudo-terminal as stdin/stdout, typing `answer`."""
    import pty
    import subprocess

    from conftest import envbox_bin

    leader, follower = pty.openpty()
    os.chown(os.ttyname(follower), env.uid, env.gid)
    proc = env.popen([envbox_bin(), *args], cwd=str(cwd), stdin=follower, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    os.write(leader, answer)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=60), out.decode(errors="replace")


@pytest.mark.parametrize("answer,trusted", [(b"n\n", False), (b"\n", False), (b"y\n", True)])
def test_trust_on_a_terminal_asks(env, answer, trusted):
    proj = make_project(env, PROJECT + "limits: {memory: 512M}\n")
    code, out = _on_a_terminal(env, proj, ["trust"], answer)
    assert "asks for:" in out and "memory 512 MiB" in out and "[y/N]" in out, out
    assert code == (0 if trusted else 1), out
    assert __import__("json").loads(run_in(env, proj, "plan", "--json").stdout)["trusted"] is trusted


def test_trust_yes_does_not_ask_on_a_terminal(env):
    proj = make_project(env)
    code, out = _on_a_terminal(env, proj, ["trust", "--yes"], b"")
    assert code == 0 and "[y/N]" not in out and "trusted " in out, out


def test_trust_then_run_then_edit_revokes(env):
    proj = make_project(env)
    shown = run_in(env, proj, "trust")
    assert shown.returncode == 0, shown.stderr
    assert "command: sh -c echo project-ran" in shown.stdout and "python host:/usr/bin/python3.11" in shown.stdout
    result = run_in(env, proj / "deep" / "er", "run", "--", "sh", "-c", "echo $WHO; /usr/bin/python -c 'import sys; print(sys.version_info[0])'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["project", "3"]
    with open(proj / "envbox.yaml", "a") as f:
        f.write("\n")  # a one-byte edit
    result = run_in(env, proj, "run", "--", "true")
    assert result.returncode == 125 and "is not trusted" in result.stderr
    run_in(env, proj, "trust")
    assert run_in(env, proj, "run", "--", "true").returncode == 0
    assert run_in(env, proj, "trust", "--revoke").returncode == 0
    assert run_in(env, proj, "run", "--", "true").returncode == 125


def test_moving_the_project_revokes_trust(env):
    proj = make_project(env)
    assert run_in(env, proj, "trust").returncode == 0
    moved = proj.parent / "moved-app"
    os.rename(proj, moved)
    result = run_in(env, moved, "run", "--", "true")
    assert result.returncode == 125 and "is not trusted" in result.stderr


def test_ceiling_stops_the_walk(env):
    proj = make_project(env)
    run_in(env, proj, "trust")
    nested = proj / "deep" / "er"
    assert run_in(env, nested, "run", "--", "true").returncode == 0
    result = env.envbox("run", "--", "true", cwd=str(nested), env={"ENVBOX_CEILING_PATHS": str(proj / "deep")})
    assert result.returncode == 125
    assert "no envbox.yaml here or in a parent directory" in result.stderr


def test_dot_envbox_yaml_is_found(env):
    proj = make_project(env, name=".envbox.yaml")
    run_in(env, proj, "trust")
    result = run_in(env, proj / "deep", "run", "--", "sh", "-c", "echo $WHO")
    assert result.stdout.strip() == "project"


def test_writable_by_others_or_symlink_is_refused(env):
    proj = make_project(env)
    (proj / "envbox.yaml").chmod(0o666)
    result = run_in(env, proj, "trust")
    assert result.returncode == 125 and "writable by group or others" in result.stderr
    (proj / "envbox.yaml").chmod(0o644)
    os.rename(proj / "envbox.yaml", proj / "real.yaml")
    os.symlink("real.yaml", proj / "envbox.yaml")
    result = run_in(env, proj, "trust")
    assert result.returncode == 125 and "symlink" in result.stderr
    no_traceback(result)


def test_project_cannot_allow_unenforced_limits(env):
    proj = make_project(env, PROJECT + "limits: {allow_unenforced: true}\n")
    result = run_in(env, proj, "trust")
    assert result.returncode == 0
    assert "allow_unenforced is ignored in project files" in result.stderr


def test_extends_merges_a_named_profile(env):
    env.write_profile("base", "command: [sh, -c, 'echo $A $B']\nenv: {A: base-a, B: base-b}\n")
    proj = make_project(env, "extends: base\nenv: {B: proj-b}\n")
    run_in(env, proj, "trust")
    result = run_in(env, proj, "run", "--", "sh", "-c", "echo $A $B")
    assert result.stdout.strip() == "base-a proj-b", result.stderr


@pytest.mark.parametrize("chain", ["cycle", "long"])
def test_extends_cycles_and_long_chains_are_errors(root_env, chain):
    env = root_env
    if chain == "cycle":
        env.write_profile("a", "extends: b\n")
        env.write_profile("b", "extends: a\n")
        words = "extends cycle"
    else:
        for i in range(30):
            env.write_profile(f"c{i}", f"extends: c{i + 1}\n")
        env.write_profile("c30", 'command: ["true"]\n')
        words = "longer than"
    first = "a" if chain == "cycle" else "c0"
    result = env.envbox("plan", first)
    assert result.returncode == 125 and words in result.stderr, result.stderr
    no_traceback(result)


def test_plan_shows_where_each_field_came_from(root_env):
    env = root_env
    base = env.write_profile("base", "command: [sh]\nenv: {A: base-a, B: base-b}\n")
    child = env.write_profile("child", "extends: base\nenv:\n  B: child-b\n")
    import json

    plan = json.loads(env.envbox("plan", "child", "--json").stdout)
    assert plan["fields"]["command"] == f"{base}:1"
    assert plan["fields"]["env.A"] == f"{base}:2"
    assert plan["fields"]["env.B"] == f"{child}:3"
    text = env.envbox("plan", "child").stdout
    assert f"env.B                {child}:3" in text


def test_gc_keeps_the_layers_of_a_trusted_project(env):
    # A layer no bundled profile shares (py-host links python -> python3.11 too).
    proj = make_project(env, "command: [sh, -c, 'true']\ntools:\n  projenv: {host: /usr/bin/env}\n")
    run_in(env, proj, "trust")
    assert run_in(env, proj, "run", "--", "true").returncode == 0
    layers = sorted(os.listdir(env.store / "layers"))
    assert layers
    assert env.envbox("gc").returncode == 0
    assert sorted(os.listdir(env.store / "layers")) == layers, "a trusted project's layer is still in use"
    run_in(env, proj, "trust", "--revoke")
    env.envbox("gc")
    assert os.listdir(env.store / "layers") == []
