"""`envbox desktop install|list|remove|sync` for real, as root and as the test user; entries
launched the way a desktop does it: the Exec line run with no terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Env, need, no_traceback
from envbox.desktop.entries import MAIN_GROUP, FieldCode, parse_desktop, parse_exec

PY_VERSION = "/usr/bin/python -c 'import sys; print(sys.version_info[:2])'"


def apps(env: Env) -> Path:
    return Path(env.vars["XDG_DATA_HOME"]) / "applications"


def app_profile(env: Env, name: str = "app", extra: str = "") -> Path:
    """A profile whose command writes the namespace's Python version to ~/NAME.out."""
    out = env.home / f"{name}.out"
    command = ["sh", "-c", f"{PY_VERSION} > {out}"]
    return env.write_profile(name, f"command: {json.dumps(command)}\ntools:\n  python: {{host: /usr/bin/python3.11}}\n{extra}")


def fake_app(env: Env, exec_line: str, *, name: str = "fake-app.desktop", extra: str = "") -> Path:
    """An application's own entry, as a package would install it (outside the user's dir)."""
    directory = env.base / "share" / "applications"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        "# the app's own entry\n[Desktop Entry]\nType=Application\nName=Fake App\nName[de]=Falsche App\n"
        f"Exec={exec_line}\nTryExec=/bin/sh\nDBusActivatable=true\nActions=again;\n{extra}\n"
        f"[Desktop Action again]\nName=Again\nExec={exec_line}\n"
    )
    os.chmod(directory, 0o755)
    return path


def listed(env: Env) -> list[dict]:
    result = env.envbox("desktop", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_exec(env: Env, entry: Path, fields: dict[str, str] | None = None, group: str = MAIN_GROUP) -> subprocess.CompletedProcess:
    """Start an entry like a desktop does: Exec parsed, field codes expanded, no terminal."""
    argv = []
    for arg in parse_exec(parse_desktop(entry.read_text()).group(group).raw("Exec")):
        if isinstance(arg, FieldCode):
            argv += [fields[arg]] if fields and arg in fields else []
        else:
            argv.append(arg)
    return env.cmd(argv, stdin=subprocess.DEVNULL, start_new_session=True)


def validate(path: Path) -> None:
    need(shutil.which("desktop-file-validate") is not None, "desktop-file-validate is missing (apt-get install desktop-file-utils)")
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout


def test_generated_entry_launches_the_app_in_its_namespace(env):
    app_profile(env, extra="desktop:\n  name: My App\n  mime_types: [text/plain]\n  categories: [Development]\n")
    result = env.envbox("desktop", "install", "app")
    assert result.returncode == 0, result.stderr
    entry = apps(env) / "envbox-app.desktop"
    assert result.stdout.strip() == f"installed {entry}"
    validate(entry)
    assert [(r["profile"], r["file"], r["source"], r["orphan"]) for r in listed(env)] == [("app", str(entry), None, False)]
    launched = run_exec(env, entry)
    assert launched.returncode == 0, launched.stderr
    assert (env.home / "app.out").read_text().strip() == "(3, 11)"
    assert not os.path.lexists("/usr/bin/python"), "the host's /usr/bin/python must stay absent"


def test_entry_for_a_profile_without_a_desktop_section(root_env):
    env = root_env
    result = env.envbox("desktop", "install", "py-host")
    assert result.returncode == 0, result.stderr
    assert "has no desktop: section" in result.stderr
    entry = apps(env) / "envbox-py-host.desktop"
    validate(entry)
    text = entry.read_text()
    assert "desktop: section." not in text.splitlines()[0], text
    main = parse_desktop(text).group(MAIN_GROUP)
    assert main.string("Name") == "Py Host"
    description = __import__("yaml").safe_load((Path(__file__).resolve().parents[2] / "profiles" / "py-host.yaml").read_text())["description"]
    assert main.string("Comment") == description


def test_wrapped_entry_keeps_its_name_and_passes_the_field_codes(env):
    script = env.base / "fake app"  # a space in the program's path, on purpose
    script.write_text(f'#!/bin/sh\n{PY_VERSION} > "$1"\n')
    script.chmod(0o755)
    original = fake_app(env, f'"{script}" %f')
    app_profile(env)
    result = env.envbox("desktop", "install", "app", "--from", str(original))
    assert result.returncode == 0, result.stderr
    entry = apps(env) / original.name
    validate(entry)
    text = entry.read_text()
    assert "Name[de]=Falsche App" in text and "# the app's own entry" in text
    assert "TryExec" not in text and "DBusActivatable" not in text
    for group in (MAIN_GROUP, "Desktop Action again"):
        target = env.home / f"{group.split()[-1]}.txt"
        launched = run_exec(env, entry, {"%f": str(target)}, group)
        assert launched.returncode == 0, launched.stderr
        assert target.read_text().strip() == "(3, 11)"
    [row] = listed(env)
    assert (row["file"], row["source"], row["original"]) == (str(entry), str(original), "unchanged")


def test_sync_rewrites_changed_originals_and_reports_orphans(env):
    original = fake_app(env, "/bin/true %U")
    app_profile(env)
    assert env.envbox("desktop", "install", "app", "--from", str(original)).returncode == 0
    entry = apps(env) / original.name
    quiet = env.envbox("desktop", "sync")
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stdout + quiet.stderr

    original.write_text(original.read_text().replace("/bin/true %U", "/bin/echo --changed %U"))
    assert listed(env)[0]["original"] == "changed"
    synced = env.envbox("desktop", "sync")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith(f"updated  {entry}: the original changed")
    assert "/bin/echo --changed %U" in entry.read_text()
    assert listed(env)[0]["original"] == "unchanged"
    validate(entry)

    (env.user_profiles / "app.yaml").unlink()
    orphan = env.envbox("desktop", "sync")
    assert orphan.returncode == 0 and orphan.stdout.startswith(f"orphan   {entry}: profile app no longer exists")
    assert entry.exists() and listed(env)[0]["orphan"] is True
    removed = env.envbox("desktop", "remove", "app")
    assert removed.returncode == 0 and removed.stdout.strip() == f"removed {entry}"
    assert listed(env) == []


def test_sync_follows_the_profiles_desktop_section(env):
    profile = app_profile(env, extra="desktop:\n  name: Old Name\n")
    assert env.envbox("desktop", "install", "app").returncode == 0
    entry = apps(env) / "envbox-app.desktop"
    profile.write_text(profile.read_text().replace("Old Name", "New Name"))
    synced = env.envbox("desktop", "sync")
    assert synced.returncode == 0 and synced.stdout == f"updated  {entry}: rewritten from the profile\n"
    assert "Name=New Name" in entry.read_text().splitlines()
    assert env.envbox("desktop", "sync").stdout == ""


def test_remove_deletes_only_envbox_entries_of_that_profile(env):
    app_profile(env)
    app_profile(env, "other")
    for name in ("app", "other"):
        assert env.envbox("desktop", "install", name).returncode == 0
    mine = apps(env) / "mine.desktop"
    mine.write_text("[Desktop Entry]\nType=Application\nName=Mine\nExec=/bin/true\n")
    result = env.envbox("desktop", "remove", "app")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in apps(env).glob("*.desktop")) == ["envbox-other.desktop", "mine.desktop"]
    again = env.envbox("desktop", "remove", "app")
    assert again.returncode == 125 and again.stderr.startswith("envbox: no envbox desktop entry for app")
    no_traceback(again)


@pytest.mark.parametrize("wrapping", [False, True], ids=["generated", "wrapped"])
def test_a_symlink_at_the_target_is_not_followed(env, wrapping):
    app_profile(env)
    original = fake_app(env, "/bin/true")
    victim = env.base / "victim.desktop"
    victim.write_text("[Desktop Entry]\nType=Application\nName=Victim\nExec=/bin/true\n")
    before = victim.read_bytes()
    apps(env).mkdir(parents=True)
    link = apps(env) / (original.name if wrapping else "envbox-app.desktop")
    link.symlink_to(victim)
    env.give(env.base)
    args = ("--from", str(original)) if wrapping else ()
    result = env.envbox("desktop", "install", "app", *args)
    assert result.returncode == 125
    assert result.stderr.startswith(f"envbox: {link} is a symbolic link"), result.stderr
    no_traceback(result)
    assert victim.read_bytes() == before and link.is_symlink()
    assert env.envbox("desktop", "remove", "app").returncode == 125
    assert env.envbox("desktop", "sync").returncode == 0
    assert victim.read_bytes() == before and link.is_symlink()


def test_a_hand_written_entry_of_the_same_name_is_kept(env):
    app_profile(env)
    apps(env).mkdir(parents=True)
    own = apps(env) / "envbox-app.desktop"
    own.write_text("[Desktop Entry]\nType=Application\nName=Mine\nExec=/bin/true\n")
    copy = apps(env) / "fake-app.desktop"  # the user's own copy shadowing the app's entry
    copy.write_text("[Desktop Entry]\nType=Application\nName=My Fake\nExec=/bin/true\n")
    env.give(env.base)
    before = {p: p.read_bytes() for p in (own, copy)}
    original = fake_app(env, "/bin/true")
    for args in ((), ("--from", str(original)), ("--from", str(copy))):
        result = env.envbox("desktop", "install", "app", *args)
        assert result.returncode == 125, result.stdout
        assert "was not made by envbox; leaving it alone" in result.stderr.splitlines()[0]
        assert result.stderr.splitlines()[1].startswith("hint: move it out of")
        no_traceback(result)
    assert {p: p.read_bytes() for p in before} == before
    assert env.envbox("desktop", "remove", "app").returncode == 125
    assert {p: p.read_bytes() for p in before} == before


def test_profile_desktop_from_is_wrapped(env):
    original = fake_app(env, "/bin/true %u")
    app_profile(env, extra=f"desktop:\n  from: {original}\n")
    result = env.envbox("desktop", "install", "app")
    assert result.returncode == 0, result.stderr
    assert listed(env)[0]["source"] == str(original)


def test_system_entries_need_root(env):
    app_profile(env)
    system_dir = env.base / "system-applications"
    result = env.envbox("desktop", "install", "app", "--system", env={"ENVBOX_DESKTOP_SYSTEM_DIR": str(system_dir)})
    if env.uid != 0:
        assert result.returncode == 125
        assert result.stderr.startswith(f"envbox: --system writes to {system_dir}, which needs root")
        no_traceback(result)
        assert not system_dir.exists()
        return
    assert result.returncode == 0, result.stderr
    entry = system_dir / "envbox-app.desktop"
    assert entry.stat().st_mode & 0o777 == 0o644
    rows = json.loads(env.envbox("desktop", "list", "--json", env={"ENVBOX_DESKTOP_SYSTEM_DIR": str(system_dir)}).stdout)
    assert [(r["scope"], r["file"]) for r in rows] == [("system", str(entry))]
    assert env.envbox("desktop", "remove", "app", "--system", env={"ENVBOX_DESKTOP_SYSTEM_DIR": str(system_dir)}).returncode == 0
    assert not entry.exists()


@pytest.mark.parametrize(
    "args,code,first",
    [
        (("install", "no-such"), 125, "envbox: no profile named 'no-such'"),
        (("install", "app", "--from", "/nonexistent/x.desktop"), 125, "envbox: cannot read /nonexistent/x.desktop"),
        (("install", "../evil"), 2, "envbox: bad profile name"),
        (("remove", "Bad Name"), 2, "envbox: bad profile name"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(env, args, code, first):
    app_profile(env)
    result = env.envbox("desktop", *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(first), result.stderr
    no_traceback(result)


def test_app_cannot_rewrite_envbox_desktop_entries(env):
    env.write_profile("menu", "command: [sh, -c]\ndesktop: {name: Menu}\n")
    assert env.envbox("desktop", "install", "menu").returncode == 0
    entry = Path(env.vars["XDG_DATA_HOME"]) / "applications" / "envbox-menu.desktop"
    before = entry.read_bytes()
    result = env.envbox("launch", "menu", "--", f"echo Exec=/bin/evil >> {entry} 2>&1; echo rc=$?")
    assert result.stdout.strip() != "rc=0" and "Read-only file system" in result.stderr, result.stdout + result.stderr
    assert entry.read_bytes() == before
