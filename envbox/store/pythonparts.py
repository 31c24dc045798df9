"""Post-build steps that finish a Python layer the way Debian's or pip's installer would:
console scripts for wheels put in place (`pip`), the layer's Python leaving the host's
dist-packages out even where its `site` module is frozen, and an older ensurepip pointed at
the venv part's own wheels. File edits on the layer tree; nothing runs."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from envbox.core.errors import BuildError

HOST_DIST = "/usr/lib/python3/dist-packages"
HOST_SITE_PTH = "envbox-host-site.pth"  # written by the host-site part (postbuild.python_host_site)
OWN_SITE_PTH = "envbox-own-site.pth"

# ---- console scripts ------------------------------------------------------------------------

_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_ENTRY = re.compile(rf"\s*({_DOTTED})\s*:\s*({_DOTTED})\s*(?:\[[^\]]*\])?\s*")
# Wheels built under some Python 3 name its version in their scripts (pip3, pip3.8,
# easy_install-3.8); pip's installer drops those and writes the installing Python's own.
_VERSIONED = {"pip": re.compile(r"pip[0-9]+(\.[0-9]+)?"), "easy_install": re.compile(r"easy_install-[0-9]+\.[0-9]+")}


def console_scripts(root: Path, interpreter: str) -> list[str]:
    """Write usr/bin/NAME for every console script of the wheels in the layer's
    usr/lib/INTERPRETER/dist-packages (what pip writes when it installs them): `pip` also as
    pip2 and pip2.7 for python2.7. Returns the names written. A name the layer already has
    with other contents is an error: the step never replaces a program of the packages."""
    version = interpreter.removeprefix("python")
    site = Path(root) / "usr" / "lib" / interpreter / "dist-packages"
    scripts: dict[str, tuple[str, str]] = {}
    for info in sorted(site.glob("*.dist-info")):
        scripts.update(_entry_points(info / "entry_points.txt"))
    for base, versioned in _VERSIONED.items():
        if base in scripts:
            scripts = {n: e for n, e in scripts.items() if not versioned.fullmatch(n)}
            suffixes = (version.split(".")[0], version) if base == "pip" else ("-" + version,)
            scripts.update({base + s: scripts[base] for s in suffixes})
    bindir = Path(root) / "usr" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name, (module, attr) in sorted(scripts.items()):
        _write_script(bindir / name, _script_text(interpreter, module, attr))
    return sorted(scripts)


def _entry_points(path: Path) -> dict[str, tuple[str, str]]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # script names keep their case
    try:
        parser.read_string(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise BuildError(f"console-scripts: cannot read {path.parent.name}/entry_points.txt: {exc}", "check the release's wheels") from None
    if not parser.has_section("console_scripts"):
        return {}
    out = {}
    for name, spec in parser.items("console_scripts"):
        m = _ENTRY.fullmatch(spec)
        if not _SCRIPT_NAME.fullmatch(name) or not m:
            raise BuildError(f"console-scripts: {path.parent.name} declares a script {name!r} = {spec!r} envbox cannot write",
                             "drop the console-scripts step for this part")
        out[name] = (m[1], m[2])
    return out


def _script_text(interpreter: str, module: str, attr: str) -> str:
    first, _, rest = attr.partition(".")
    call = f"{first}.{rest}" if rest else first
    return (
        f"#!/usr/bin/{interpreter}\n"
        "# -*- coding: utf-8 -*-\n"
        "# Written by envbox's console-scripts step, as pip writes a wheel's console script.\n"
        "import sys\n"
        f"from {module} import {first}\n"
        "if __name__ == '__main__':\n"
        f"    sys.exit({call}())\n"
    )


def _write_script(path: Path, text: str) -> None:
    if path.is_symlink() or (path.exists() and path.read_text(errors="replace") != text):
        raise BuildError(f"console-scripts: the layer already has usr/bin/{path.name}", "drop the console-scripts step or the package that provides it")
    path.write_text(text)
    path.chmod(0o755)


# ---- the host's dist-packages left out at start-up -------------------------------------------

# One .pth line (site runs lines that start with `import`). Python 3.11's `site` is frozen, so
# the patched site.py (postbuild.python_site) is never read; nor is it for 3.13 under -E/-I,
# which ignore PYTHON_FROZEN_MODULES. Debian's frozen site adds the host's dir before the
# layer's versioned one, whose .pth files run last: this takes the host's dir (and what its
# .pth files added below it) off sys.path again, before any program's import. The host's .pth
# files have run by then (setuptools' distutils-precedence.pth imports _distutils_hack and
# puts its finder on sys.meta_path): what they imported from the host's dir is unloaded and
# their import hooks removed, so nothing of the host's packages stays reachable.
_DROP_HOST = """\
d = {d!r}
def under(p):
    return isinstance(p, str) and (p.rstrip('/') == d or p.startswith(d + '/'))
def origin(m):
    return getattr(m, '__file__', None)
sys.path[:] = [p for p in sys.path if not under(p)]
sys.meta_path[:] = [f for f in sys.meta_path if not under(origin(sys.modules.get(type(f).__module__)))]
for name in [n for n, m in list(sys.modules.items()) if under(origin(m))]:
    del sys.modules[name]
"""


def _drop_host_line(condition: str | None) -> str:
    run = f"exec({_DROP_HOST.format(d=HOST_DIST)!r}, {{'sys': sys}})"
    return f"import os, sys; {run} if not ({condition}) else None\n" if condition else f"import sys; {run}\n"


# Without the python3 part, /usr/bin/python3 stays the host's: where that is this same version
# (3.11 on Debian 12) it runs this layer's binary, and the host's `#!/usr/bin/python3` scripts
# need the host's packages. Started by that name (sys.executable keeps it), nothing is dropped.
_AS_PYTHON3 = "os.path.basename(sys.executable) == 'python3'"


def python_own_site(root: Path, interpreter: str, *, provides_python3: bool = True) -> None:
    """The layer's Python drops the host's /usr/lib/python3/dist-packages from sys.path at
    start-up, unless the host-site part (whose step runs before the release's own) asked for it,
    or (without provides_python3) it was started as the host's python3."""
    own = Path(root) / "usr" / "lib" / interpreter / "dist-packages"
    own.mkdir(parents=True, exist_ok=True)
    if (own / HOST_SITE_PTH).exists():
        return
    (own / OWN_SITE_PTH).write_text(_drop_host_line(None if provides_python3 else _AS_PYTHON3))


# ---- a venv part's wheels, private to the release ---------------------------------------------

SHARED_WHEELS = "/usr/share/python-wheels"
WHEELS_DIR = "envbox-wheels"  # usr/lib/INTERPRETER/envbox-wheels/: the part's `keep:` wheels
_PROJECTS_RE = re.compile(r"^_PROJECTS = \[([^\]]*)\]", re.M)


def ensurepip_wheels(root: Path, interpreter: str) -> None:
    """Point an older suite's ensurepip (bullseye's reads /usr/share/python-wheels and asserts
    one wheel per project) at usr/lib/INTERPRETER/envbox-wheels, where the part keeps its pinned
    wheels: over the host's /usr, the shared dir also shows the host's own pip wheel. Projects
    it lists without a wheel there (Debian's separate pkg_resources wheel: setuptools' own
    wheel carries pkg_resources) are left out."""
    root = Path(root)
    lib = root / "usr" / "lib" / interpreter
    ensurepip, wheels = lib / "ensurepip" / "__init__.py", lib / WHEELS_DIR
    if not ensurepip.is_file() or wheels.is_symlink() or not wheels.is_dir():
        raise BuildError(f"ensurepip-wheels: the layer has no {interpreter} ensurepip or no usr/lib/{interpreter}/{WHEELS_DIR}", "use it with the -venv package and wheel sources kept there")
    text = ensurepip.read_text()
    quoted = re.compile(r"""(['"])/usr/share/python-wheels(/|\1)""")
    text, count = quoted.subn(lambda m: f"{m[1]}/usr/lib/{interpreter}/{WHEELS_DIR}{m[2]}", text)
    if count == 0:
        raise BuildError(f"ensurepip-wheels: {interpreter}'s ensurepip does not read {SHARED_WHEELS}", "drop the ensurepip-wheels step for this release")
    have = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    listed = _PROJECTS_RE.search(text)
    if listed:
        names = re.findall(r"""['"]([A-Za-z0-9_.-]+)['"]""", listed[1])
        kept = [n for n in names if n.lower() in have]
        if not kept:
            raise BuildError(f"ensurepip-wheels: none of ensurepip's projects ({', '.join(names)}) has a wheel in {WHEELS_DIR}", "add the wheels to the part's sources")
        text = text[:listed.start()] + "_PROJECTS = [" + ", ".join(repr(n) for n in kept) + "]" + text[listed.end():]
    mode = ensurepip.stat().st_mode
    ensurepip.write_text(text)
    ensurepip.chmod(mode)


# The post steps of this module, by their catalog name (postbuild.run_steps dispatches here).
STEPS = {"console-scripts": console_scripts, "ensurepip-wheels": ensurepip_wheels}  # python-own-site: postbuild passes the links
