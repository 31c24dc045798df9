"""The fast launch path reads a cached Plan, valid while its inputs are unchanged. Stdlib only.

`envbox launch NAME` and `envbox run --profile NAME -- CMD` first look for
<cache>/plans/<uid>-<NAME>.plan. The entry lists every input the plan was made from (profile,
lock, catalog files and directories, the would-be higher-scope profile paths, layer
directories, envbox's own code) with a stat signature, and the environment variables that
choose envbox's directories. If all still match, the launch goes straight to the supervisor
without importing typer, yaml or platformdirs; otherwise the full CLI runs and rewrites the
entry (envbox.app.plancache_writer; what is read-only inside is decided by envbox.app.protect).
"""

from __future__ import annotations

import marshal
import os
import sys

from envbox.core.digests import signature

CACHE_VERSION = 2
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
    from envbox.core.digests import path_key

    # '@' is not allowed in profile names: no named launch can ever reach a project's entry.
    return "@project-" + path_key(project_file)[:32]


def entry_path(cache: str, name: str) -> str:
    return os.path.join(cache, "plans", f"{os.getuid()}-{name}.plan")


def key_env(environ) -> dict:
    return {k: environ[k] for k in KEY_NAMES if k in environ}


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
    if argv == ["launch"]:  # the project's own command
        return None, None, []
    return None


def load(name: str, environ) -> dict | None:
    """The cache entry for name if every recorded input is unchanged."""
    if any(environ.get(v) for v in SLOW_VARS) or "/" in name or name.startswith("."):
        return None
    try:
        os.getcwd()
    except OSError:
        return None  # a removed working directory: the full CLI says so in one line
    data = read_entry(entry_path(cache_dir(environ), name))
    if data is None:
        return None
    try:
        # marshal, not json: it is built in, while `import json` costs ~10 ms here (re,
        # enum). marshal trusts its input: read_entry made sure the file is envbox's own.
        entry = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
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


ENTRY_MAX = 16 << 20  # an entry lists a few hundred inputs


def read_entry(path: str) -> bytes | None:
    """An entry's bytes, only from a file and a directory this user owns and nobody else can
    write (the cache may be a shared ENVBOX_CACHE_DIR; marshal trusts its input), never
    through a link, never blocking, at most ENTRY_MAX bytes."""
    from envbox import fsio

    if fsio.private_dir_problem(os.path.dirname(path)):
        return None
    try:
        fd, st = fsio.open_regular(path)
    except fsio.FileRefused:
        return None
    try:
        if st.st_uid != os.getuid() or st.st_mode & 0o022 or st.st_size > ENTRY_MAX:
            return None
        return fsio.read_fd(fd, limit=ENTRY_MAX)
    except (fsio.FileRefused, OSError):
        return None
    finally:
        os.close(fd)


def try_launch(argv: list[str], environ, *, closed_fds: tuple = ()) -> int | None:
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
    return launch.run(launch.spec_from_cache(entry, environ, os.getcwd(), command, extra, closed_fds=closed_fds))
