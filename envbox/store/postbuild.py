"""Post-build steps on a filled layer (a catalog release's `post:`): byte-compile with the
layer's own interpreter, run in the sandbox. Side effects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from envbox import helper
from envbox.core import sandboxargs
from envbox.core.catalog import PYTHON_NAME, check_steps
from envbox.core.errors import BuildError

if TYPE_CHECKING:
    from envbox.sources import BuildContext

DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_PATH = "/usr/bin:/bin"  # inside the namespace: the layer's programs, then the host's
# Run as a file, like at launch; importing it here would only load ctypes for nothing.
SANDBOX_FILE = str(Path(__file__).resolve().parent.parent / "runtime" / "sandbox.py")


def run_steps(steps: Sequence[Any], root: Path, ctx: BuildContext) -> None:
    """Run each step of a release's `post:` list on the layer at root."""
    try:
        check_steps(list(steps))
    except ValueError as exc:
        raise BuildError(f"bad post step: {exc}", "fix the release's `post:` list in the catalog") from None
    for step in steps:
        (kind, arg), = step.items()
        ctx.progress(f"post: {kind} {arg}")
        pycompile(root, arg, env=ctx.helper_env)


# ---- running the layer's own programs -------------------------------------------------------


def over_usr_argv(layer_root: Path, argv: list[str], env: Mapping[str, str]) -> list[str]:
    """The command that runs argv through envbox's own sandbox with LAYER/usr stacked read-only
    over the host's /usr (`python -SI sandbox.py ...`, as at launch: unshare and mount happen in
    that child, never in the builder; without root it adds a user namespace)."""
    usr = Path(layer_root).absolute() / "usr"
    if not usr.is_dir():
        raise BuildError(f"layer {layer_root} has no usr/ directory", "the source produced no files under usr/")
    args = sandboxargs.render(
        userns=os.geteuid() != 0, overlays=[("/usr", [str(usr)])], env={**env, "PATH": LAYER_PATH}, cwd="/", argv=list(argv)
    )
    return [sys.executable, "-SI", SANDBOX_FILE, *args]


def run_over_usr(layer_root: Path, argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """Run argv over the layer (over_usr_argv); the environment is exactly env. With the
    helpers' timeout (envbox.helper); the exit status is the caller's to judge."""
    try:
        return helper.run(over_usr_argv(layer_root, argv, env), env=dict(env), check=False)
    except helper.HelperFailed as exc:
        raise BuildError(f"{argv[0]} in the layer: {exc.reason}", "check the layer's programs run: envbox build --debug") from None


# What `compileall -q -d /usr/lib/python2.7 LIBDIR` does, for a given list of files: each pyc
# records /usr/lib/python2.7/<file> as its source, the path tracebacks show in the namespace.
_PY2_COMPILE = """
import os, sys, py_compile
failed = 0
for rel in sys.argv[1:]:
    try:
        py_compile.compile(os.path.join({real!r}, rel), dfile=os.path.join({shown!r}, rel), doraise=True)
    except py_compile.PyCompileError as exc:
        failed += 1
        sys.stdout.write(exc.msg + "\\n")
sys.exit(1 if failed else 0)
"""


def pycompile(root: Path, interpreter: str, *, env: Mapping[str, str]) -> None:
    """Byte-compile the layer's stdlib with its own interpreter (Debian does it in postinst).

    The /usr overlay is read-only, so without this every start compiles in memory. The pyc
    files are written to LAYER/usr/lib/pythonX.Y directly but record /usr/lib/pythonX.Y as
    their source (-d for 2.7; -s/-p for 3.x), the path tracebacks show in the namespace.
    """
    m = re.fullmatch(PYTHON_NAME, interpreter)
    if not m:
        raise BuildError(f"pycompile: {interpreter!r} is not an interpreter name such as python3.13", "fix the catalog's post step")
    root = Path(root).absolute()
    libdir = root / "usr" / "lib" / interpreter
    if not (root / "usr" / "bin" / interpreter).exists() or not libdir.is_dir():
        raise BuildError(f"pycompile: the layer has no usr/bin/{interpreter} or usr/lib/{interpreter}", "check the release's packages")
    argv = [f"/usr/bin/{interpreter}", "-E", "-S", "-m", "compileall", "-q"]
    if m[1] == "2":
        # 2.7 pyc files are valid while the source's mtime matches: layers must keep mtimes.
        # 2.7's compileall has no -j: two processes take half the packages each (2 cores here;
        # byte-compiling is the largest part of a python layer's build).
        files = sorted(str(p.relative_to(libdir)) for p in libdir.rglob("*.py") if p.is_file() and not p.is_symlink())
        script = _PY2_COMPILE.format(real=str(libdir), shown=f"/usr/lib/{interpreter}")
        jobs = [[f"/usr/bin/{interpreter}", "-E", "-S", "-c", script, *files[i::2]] for i in range(2)]
    else:
        # unchecked-hash (PEP 552): layers are immutable, so the pyc never needs re-checking,
        # and it stays valid when a copy of the layer loses its mtimes.
        jobs = [[*argv, "-s", str(root), "-p", "/", "-j", "0", "--invalidation-mode", "unchecked-hash", str(libdir)]]
    from concurrent.futures import ThreadPoolExecutor

    def one(job: list[str]) -> None:
        helper.run(over_usr_argv(root, job, env), env=dict(env))

    try:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            list(pool.map(one, jobs))
    except helper.HelperFailed as exc:
        status = f"exit {exc.returncode}" if exc.returncode is not None else "stopped"
        raise BuildError(f"pycompile {interpreter} failed ({status}): {exc.reason}", "check the layer's interpreter runs: envbox build --debug") from None

