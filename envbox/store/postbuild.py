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
from envbox.core.catalog import GCC_RUNTIME, PYTHON_NAME, check_steps
from envbox.core.errors import BuildError
from envbox.store import pythonparts

if TYPE_CHECKING:
    from envbox.sources import BuildContext

DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_PATH = "/usr/bin:/bin"  # inside the namespace: the layer's programs, then the host's
# Run as a file, like at launch; importing it here would only load ctypes for nothing.
SANDBOX_FILE = str(Path(__file__).resolve().parent.parent / "runtime" / "sandbox.py")


def run_steps(steps: Sequence[Any], root: Path, ctx: BuildContext, *, links: Mapping[str, str] = {}) -> None:
    """Run each step of a release's `post:` list on the layer at root; links are the symlinks
    the store makes in the layer afterwards (layer path -> target)."""
    try:
        check_steps(list(steps))
    except ValueError as exc:
        raise BuildError(f"bad post step: {exc}", "fix the release's `post:` list in the catalog") from None
    for step in steps:
        (kind, arg), = step.items()
        ctx.progress(f"post: {kind} {arg}")
        if kind == "pycompile":
            pycompile(root, arg, env=ctx.helper_env)
        elif kind == "python-site":
            python_site(root, arg)
        elif kind == "gcc-private-runtime":
            gcc_private_runtime(root, *re.fullmatch(GCC_RUNTIME, arg).groups())
        elif kind == "python-own-site":
            pythonparts.python_own_site(root, arg, provides_python3="usr/bin/python3" in links)
        elif kind in pythonparts.STEPS:
            pythonparts.STEPS[kind](root, arg)
        else:
            python_host_site(root, arg)


# ---- which packages a layer's Python sees -----------------------------------------------------

# Debian's site.py adds /usr/lib/python3/dist-packages to every python3.X: the host's packages,
# built for the host's Python. In a layer it becomes /usr/lib/python3.X/dist-packages, which
# Debian's site.py also searches (its "deprecated" per-version dir), so the layer's python sees
# its own packages (and user/local site dirs), not the host's.
_SITE_SHARED_RE = re.compile(r'os\.path\.join\(prefix, "lib",\s*"python3",\s*"dist-packages"\)')
HOST_SITE_PTH = pythonparts.HOST_SITE_PTH


def python_site(root: Path, interpreter: str) -> None:
    """Point the layer's python3.X at its own dist-packages instead of the shared python3 one,
    and move what the layer's packages put in usr/lib/python3/dist-packages there."""
    root = Path(root)
    site = root / "usr" / "lib" / interpreter / "site.py"
    own = root / "usr" / "lib" / interpreter / "dist-packages"
    try:
        text = site.read_text()
    except OSError:
        raise BuildError(f"python-site: the layer has no usr/lib/{interpreter}/site.py", "check the release's packages") from None
    new, count = _SITE_SHARED_RE.subn(f'os.path.join(prefix, "lib", "{interpreter}", "dist-packages")', text)
    if count != 1:
        raise BuildError(f"python-site: {interpreter}'s site.py does not add /usr/lib/python3/dist-packages the way Debian's does", "drop the python-site step for this release")
    mode = site.stat().st_mode
    site.write_text(new)
    site.chmod(mode)
    shared = root / "usr" / "lib" / "python3" / "dist-packages"
    own.mkdir(exist_ok=True)
    if shared.is_dir() and not shared.is_symlink():
        _merge_into(shared, own)
        shared.rmdir()
        if not any(shared.parent.iterdir()):
            shared.parent.rmdir()


def _merge_into(src: Path, dst: Path) -> None:
    """Move src's entries into dst, merging directories; a name in both is an error."""
    for entry in sorted(src.iterdir()):
        to = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and to.is_dir() and not to.is_symlink():
            _merge_into(entry, to)
            entry.rmdir()
        elif os.path.lexists(to):
            raise BuildError(f"python-site: {to.name} is in both usr/lib/python3 and the versioned dist-packages", "report this release's package list")
        else:
            os.rename(entry, to)


def gcc_private_runtime(root: Path, major: str, tag: str) -> None:
    """Programs a newer suite's GCC builds need its newer runtime (libstdc++ 13+ initialises
    std::cout itself; it needs GLIBC 2.38), which a private layer keeps in usr/lib/envbox/TAG.
    A `specs` file in GCC's libdir (read at every start) makes them use it: that dir's loader
    and a DT_RPATH to it (RPATH, not RUNPATH: libstdc++'s own libc.so.6 must come from there too).
    Such programs run where the layer is mounted, i.e. in launches of the profile."""
    libdir = Path(root) / "usr" / "lib" / "gcc" / "x86_64-linux-gnu" / major
    private = f"/usr/lib/envbox/{tag}"
    if not libdir.is_dir() or not (Path(root) / private.lstrip("/") / "ld-linux-x86-64.so.2").exists():
        raise BuildError(f"gcc-private-runtime: the layer has no usr/lib/gcc/x86_64-linux-gnu/{major} or no private {tag} loader", "use it with `private:` and gcc-N packages")
    # libc.so/libm.so link scripts in the private dir (found first through -L) so programs link
    # against the private libc that libstdc++ 14 needs; the host's libc_nonshared.a and crt
    # files are compatible with the newer libc.
    lib = Path(root) / private.lstrip("/")
    (lib / "libc.so").write_text(
        f"GROUP ( {private}/libc.so.6 /usr/lib/x86_64-linux-gnu/libc_nonshared.a AS_NEEDED ( {private}/ld-linux-x86-64.so.2 ) )\n"
    )
    (lib / "libm.so").write_text(f"GROUP ( {private}/libm.so.6 AS_NEEDED ( {private}/libmvec.so.1 ) )\n")
    dynamic = "%{!static:%{!static-pie:"
    (libdir / "specs").write_text(
        f"*link:\n+ {dynamic}--dynamic-linker={private}/ld-linux-x86-64.so.2 -L{private} -rpath={private} --disable-new-dtags}}}}\n\n"
        # g++ leaves libgcc_s to libstdc++'s DT_NEEDED, which --no-copy-dt-needed-entries refuses
        # once both come from the private dir.
        f"*lib:\n+ {dynamic}-lgcc_s}}}}\n\n"
    )


def python_host_site(root: Path, interpreter: str) -> None:
    """The profile asked for the host's packages too: a .pth adds /usr/lib/python3/dist-packages
    (with its own .pth files) after the layer's own."""
    own = Path(root) / "usr" / "lib" / interpreter / "dist-packages"
    own.mkdir(parents=True, exist_ok=True)
    (own / HOST_SITE_PTH).write_text('import site; site.addsitedir("/usr/lib/python3/dist-packages")\n')


# ---- running the layer's own programs -------------------------------------------------------


# Where the layer being built is writable inside the confinement (below a fresh tmpfs /tmp).
LAYER_MOUNT = "/tmp/envbox-layer"
# Hidden under empty tmpfs mounts: where sockets to more privileged programs live (a session bus
# could start anything outside the confinement) and the user's files.
HIDDEN = ("/tmp", "/run", "/dev/shm")


def build_uid() -> tuple[int, int]:
    """Who a layer's programs run as when envbox builds as root: nobody, never root."""
    import pwd

    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


def _hidden() -> list[str]:
    home = os.path.realpath(os.path.expanduser("~"))
    keep_visible = ("/usr", "/etc", "/dev", "/proc", "/bin", "/lib", "/sbin")
    # The sandbox's own interpreter must stay visible (its modules load lazily).
    keep_visible += tuple(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix))
    extra = [home] if os.path.isabs(home) and home != "/" and not any((p + "/").startswith(home.rstrip("/") + "/") for p in keep_visible) else []
    return [*HIDDEN, *extra]


def over_usr_argv(layer_root: Path, argv: list[str], env: Mapping[str, str], *, writable: bool = False) -> list[str]:
    """The command that runs argv, a program of the layer being built, through envbox's own
    sandbox, confined: LAYER/usr stacked read-only over the host's /usr; no network; every
    mount read-only; /tmp, /run, /dev/shm and $HOME under empty tmpfs mounts; no terminal;
    as root, the program runs as nobody (`python -SI sandbox.py ...`: unshare and mount happen
    in that child, never in the builder; without root it adds a user namespace). With
    writable, the layer root is writable at LAYER_MOUNT: the only place it can write."""
    usr = Path(layer_root).absolute() / "usr"
    if not usr.is_dir():
        raise BuildError(f"layer {layer_root} has no usr/ directory", "the source produced no files under usr/")
    root = os.geteuid() == 0
    confine = {
        "hide": _hidden(),
        "writable": [(str(Path(layer_root).absolute()), LAYER_MOUNT)] if writable else [],
        "drop_to": build_uid() if root else None,
    }
    args = sandboxargs.render(
        userns=not root, overlays=[("/usr", [str(usr)])], env={**env, "PATH": LAYER_PATH}, cwd="/", argv=list(argv), confine=confine
    )
    return [sys.executable, "-SI", SANDBOX_FILE, *args]


def run_over_usr(layer_root: Path, argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """Run argv over the layer (over_usr_argv, confined); the environment is exactly env. With
    the helpers' timeout (envbox.helper); the exit status is the caller's to judge."""
    try:
        return helper.run(over_usr_argv(layer_root, argv, env), env=dict(env), check=False)
    except helper.HelperFailed as exc:
        raise BuildError(f"{argv[0]} in the layer: {exc.reason}", "check the layer's programs run: envbox build --debug") from None


def _lend(root: Path, uid: int, gid: int) -> list[tuple[str, int]]:
    """As root: give the layer's directories to the build user for the step (it writes pyc
    files next to the sources); returns their modes for _take_back. Files stay root's."""
    modes = []
    for dirpath, _, _ in os.walk(root):
        st = os.lstat(dirpath)
        modes.append((dirpath, st.st_mode & 0o7777))
        os.chown(dirpath, uid, gid, follow_symlinks=False)
        os.chmod(dirpath, (st.st_mode | 0o700) & 0o7777)
    return modes


def _take_back(root: Path, uid: int, modes: list[tuple[str, int]]) -> None:
    """Everything the build user owns in the layer goes back to the builder. Runs after every
    process of the step is gone (the sandbox's pid namespace died with it): nothing changes
    under our feet, and nothing here follows a symlink."""
    me, group = os.geteuid(), os.getegid()
    for dirpath, dirnames, filenames in os.walk(root):
        for path in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            try:
                if os.lstat(path).st_uid == uid:
                    os.chown(path, me, group, follow_symlinks=False)
            except FileNotFoundError:
                continue
    import stat as st

    for path, mode in modes:
        try:
            if st.S_ISDIR(os.lstat(path).st_mode):
                os.chmod(path, mode)
        except FileNotFoundError:
            continue


# What `compileall -q -d /usr/lib/python2.7 LIBDIR` does, for a given list of files: each pyc
# records /usr/lib/python2.7/<file> as its source, the path tracebacks show in the namespace.
_PY2_COMPILE = """
import os, sys, py_compile
failed = 0
for rel in sys.argv[1:]:
    try:
        py_compile.compile(os.path.join({real!r}, rel), dfile=os.path.join({shown!r}, rel), doraise=True)
    except py_compile.PyCompileError as exc:
        # Wheels for 2.7 carry modules only imported on Python 3 (importlib_resources/_py3.py);
        # pip skips what does not compile there too. The stdlib must compile.
        if rel.startswith("dist-packages/"):
            continue
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
    files = sorted(str(p.relative_to(libdir)) for p in libdir.rglob("*.py") if p.is_file() and not p.is_symlink()) if m[1] == "2" else []
    real = root
    # The interpreter is the layer's own code: it runs confined, and sees the layer (its only
    # writable place) at LAYER_MOUNT.
    root, libdir = Path(LAYER_MOUNT), Path(LAYER_MOUNT) / "usr" / "lib" / interpreter
    argv = [f"/usr/bin/{interpreter}", "-E", "-S", "-m", "compileall", "-q"]
    if m[1] == "2":
        # 2.7 pyc files are valid while the source's mtime matches: layers must keep mtimes.
        # 2.7's compileall has no -j: two processes take half the packages each (2 cores here;
        # byte-compiling is the largest part of a python layer's build).
        script = _PY2_COMPILE.format(real=str(libdir), shown=f"/usr/lib/{interpreter}")
        jobs = [[f"/usr/bin/{interpreter}", "-E", "-S", "-c", script, *files[i::2]] for i in range(2)]
    else:
        # unchecked-hash (PEP 552): layers are immutable, so the pyc never needs re-checking,
        # and it stays valid when a copy of the layer loses its mtimes.
        jobs = [[*argv, "-s", str(root), "-p", "/", "-j", "0", "--invalidation-mode", "unchecked-hash", str(libdir)]]
    as_root = os.geteuid() == 0
    uid, gid = build_uid()
    try:
        lent = _lend(real, uid, gid) if as_root else []
    except OSError as exc:
        raise BuildError(f"pycompile: cannot lend the layer to uid {uid} for the step: {exc.strerror} ({exc.filename})",
                         "the store must be on a file system that supports chown") from None
    from concurrent.futures import ThreadPoolExecutor

    def one(job: list[str]) -> None:
        helper.run(over_usr_argv(real, job, env, writable=True), env=dict(env))

    try:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            list(pool.map(one, jobs))
    except helper.HelperFailed as exc:
        status = f"exit {exc.returncode}" if exc.returncode is not None else "stopped"
        raise BuildError(f"pycompile {interpreter} failed ({status}): {exc.reason}", "check the layer's interpreter runs: envbox build --debug") from None
    finally:
        if as_root:
            _take_back(real, uid, lent)
