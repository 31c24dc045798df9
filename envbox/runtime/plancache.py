"""The fast launch path: a cached Plan, valid while its inputs are unchanged. Stdlib only.

`envbox launch NAME` and `envbox run --profile NAME -- CMD` first look for
<cache>/plans/<uid>-<NAME>.plan. The entry lists every input the plan was made from (profile,
lock, catalog files and directories, the would-be higher-scope profile paths, layer
directories, envbox's own code) with a stat signature, and the environment variables that
choose envbox's directories. If all still match, the launch goes straight to the supervisor
without importing typer, yaml or platformdirs; otherwise the full CLI runs and rewrites the
entry.
"""

from __future__ import annotations

import marshal
import os
import sys

CACHE_VERSION = 1
# Variables that change which files envbox reads or where it writes (paths.py).
KEY_NAMES = (
    "HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    "ENVBOX_SYSTEM_DIR", "ENVBOX_CONFIG_DIR", "ENVBOX_DATA_DIR", "ENVBOX_CACHE_DIR", "ENVBOX_STATE_DIR",
    "ENVBOX_RUNTIME_DIR", "ENVBOX_CEILING_PATHS",
)
# Variables that change what the fast path must do differently: leave those to the full CLI.
SLOW_VARS = ("ENVBOX_CRASH_AT", "ENVBOX_NO_FAST")


def cache_dir(environ) -> str:
    """Where the slow path wrote the entry (platformdirs' rule on Linux, or ENVBOX_CACHE_DIR)."""
    explicit = environ.get("ENVBOX_CACHE_DIR")
    if explicit:
        return explicit
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", "/"), ".cache")
    return os.path.join(base, "envbox")


def cache_key(name: str, project_file: str | None) -> str:
    """Named profiles by name; a project file by a hash of its absolute path."""
    if project_file is None:
        return name
    import hashlib

    # '@' is not allowed in profile names: no named launch can ever reach a project's entry.
    return "@project-" + hashlib.sha256(os.fsencode(project_file)).hexdigest()[:32]


def entry_path(cache: str, name: str) -> str:
    return os.path.join(cache, "plans", f"{os.getuid()}-{name}.plan")


def key_env(environ) -> dict:
    return {k: environ[k] for k in KEY_NAMES if k in environ}


def stat_signature(st) -> list:
    """What must not change for a cached plan to stay valid. ctime moves on every write,
    chmod or chown, and cannot be set back by the file's owner (unlike mtime)."""
    return [st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, st.st_uid]


def signature(path: str):
    try:
        return stat_signature(os.stat(path))
    except OSError:
        return None


def code_files() -> list[str]:
    """Every module of the envbox package, subpackages included: an edit anywhere in envbox
    invalidates the cached plans (a plan is only as current as the code that made it)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = []
    for top, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.extend(os.path.join(top, n) for n in files if n.endswith(".py"))
    return sorted(found)


def parse_argv(argv: list[str]) -> tuple[str | None, list[str] | None, list[str]] | None:
    """(profile or None for the project, command or None, extra args) for the simple forms."""
    if len(argv) >= 2 and argv[0] == "launch" and not argv[1].startswith("-"):
        rest = argv[2:]
        if rest and rest[0] != "--":
            return None
        return argv[1], None, rest[1:]
    if len(argv) >= 4 and argv[0] == "run":
        if argv[1] in ("--profile", "-p") and argv[3] == "--" and len(argv) > 4:
            return argv[2], argv[4:], []
        if argv[1].startswith("--profile=") and argv[2] == "--" and len(argv) > 3:
            return argv[1].split("=", 1)[1], argv[3:], []
    if len(argv) >= 3 and argv[0] == "run" and argv[1] == "--":
        return None, argv[2:], []
    return None


def load(name: str, environ) -> dict | None:
    """The cache entry for name if every recorded input is unchanged."""
    if any(environ.get(v) for v in SLOW_VARS) or "/" in name or name.startswith("."):
        return None
    try:
        os.getcwd()
    except OSError:
        return None  # a removed working directory: the full CLI says so in one line
    try:
        with open(entry_path(cache_dir(environ), name), "rb") as f:
            # marshal, not json: it is built in, while `import json` costs ~10 ms here (re,
            # enum). The file is envbox's own, in the user's own cache directory.
            entry = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(entry, dict):
        return None
    try:
        if entry["version"] != CACHE_VERSION or entry["uid"] != os.getuid() or entry["env"] != key_env(environ):
            return None
        for path, sig in entry["inputs"]:
            if signature(path) != sig:
                return None
    except (KeyError, TypeError, ValueError):
        return None
    return entry


def make_entry(paths, plan_data: dict, inputs: list, environ) -> dict:
    """A cache entry for a plan (Plan.to_cache()) made from the recorded inputs."""
    return {
        "version": CACHE_VERSION,
        "uid": os.getuid(),
        "env": key_env(environ),
        "inputs": [[p, s] for p, s in inputs] + [[p, signature(p)] for p in code_files()],
        "plan": plan_data,
        "store_root": str(paths.store),
        "runtime_dir": str(paths.runtime_dir),
        "readonly": protected_dirs(paths),
    }


def protected_dirs(paths, *, create: bool = True) -> list:
    """envbox's own state, read-only inside every launch: the app cannot change its policy
    (profiles, trust records, store, cached plans) behind the user's back."""
    for d in (paths.config_dir, paths.data_dir, paths.state_dir, paths.cache_dir):
        if create:
            os.makedirs(d, exist_ok=True)  # a directory created later by the app would not be protected
    dirs = (paths.config_dir, paths.data_dir, paths.state_dir, paths.cache_dir, paths.system_dir)
    # Real paths: a dotfiles-style symlink (~/.config/envbox -> ~/dotfiles/envbox) is protected
    # at its target (a bind mount over the link itself would not hold).
    return [os.path.realpath(d) for d in dirs] + desktop_entries(os.environ)


def desktop_entries(environ) -> list:
    """The launcher entries envbox wrote for this user: read-only too (an app could otherwise
    point the menu entry of another app at something else)."""
    from envbox.desktop.files import find_installed, user_place

    return [str(item.path) for item in find_installed(user_place(environ))]


def write(paths, name: str, entry: dict) -> None:
    """Record an entry (the full CLI, after a successful prepare); best effort."""
    from envbox.fsio import write_atomic

    target = entry_path(str(paths.cache_dir), name)
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        write_atomic(target, marshal.dumps(entry), mode=0o600, fsync=False)
    except OSError:
        pass  # a cache is an optimisation; the slow path works without it


def try_launch(argv: list[str], environ) -> int | None:
    # (A named launch never has '@' in its name; only project entries do: see cache_key.)
    """Launch from the cache, or None to let the full CLI handle argv."""
    parsed = parse_argv(argv)
    if parsed is None:
        return None
    name, command, extra = parsed
    if name is not None and name.startswith("@"):
        return None
    if name is None:
        from envbox.config import project

        try:
            found = project.find(environ)
        except project.ProjectError:
            return None
        if found is None:
            return None
        name = cache_key("", found)
    entry = load(name, environ)
    if entry is None:
        return None
    from envbox.runtime import supervisor as launch

    if command is None and not entry["plan"]["argv"]:
        return None  # the full CLI explains the missing command
    if environ.get("ENVBOX_TRACE") == "1":
        print("envbox: fast path (cached plan)", file=sys.stderr)
    return launch.run(launch.spec_from_cache(entry, environ, os.getcwd(), command, extra))
