"""Post-build steps on a filled layer: byte-compile in the sandbox, privatize libraries. Side effects."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from envbox.core import sandboxargs
from envbox.core.errors import BuildError

if TYPE_CHECKING:
    from envbox.sources import BuildContext

STEP_KINDS = ("pycompile",)
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_PATH = "/usr/bin:/bin"  # inside the namespace: the layer's programs, then the host's
# Run as a file, like at launch; importing it here would only load ctypes for nothing.
SANDBOX_FILE = str(Path(__file__).resolve().parent.parent / "runtime" / "sandbox.py")
_PYTHON_RE = re.compile(r"python([23])\.([0-9]{1,2})")


# ---- the steps named in a catalog's `post:` -------------------------------------------------


def check_steps(steps: Any) -> None:
    """Validate a release's `post:` list (already parsed YAML); ValueError names the bad step. Pure."""
    if not isinstance(steps, list):
        raise ValueError("post must be a list of steps such as {pycompile: python3.13}")
    for step in steps:
        if not isinstance(step, dict) or len(step) != 1:
            raise ValueError(f"each post step is a one-key mapping such as {{pycompile: python3.13}}, not {step!r}")
        (kind, arg), = step.items()
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown post step {kind!r} (known: {', '.join(STEP_KINDS)})")
        if not isinstance(arg, str) or not _PYTHON_RE.fullmatch(arg):
            raise ValueError(f"pycompile takes an interpreter name such as python3.13, not {arg!r}")


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
    """Run argv over the layer (over_usr_argv); the environment is exactly env."""
    return subprocess.run(over_usr_argv(layer_root, argv, env), env=dict(env), capture_output=True, text=True)


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
    m = _PYTHON_RE.fullmatch(interpreter)
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
    procs = [
        subprocess.Popen(over_usr_argv(root, job, env), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for job in jobs
    ]
    for proc in procs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            tail = output.strip().splitlines()[-3:]
            raise BuildError(f"pycompile {interpreter} failed (exit {proc.returncode}): {' / '.join(tail)}", "check the layer's interpreter runs: envbox build --debug")


# ---- private libraries ----------------------------------------------------------------------

PT_INTERP, PT_DYNAMIC = 3, 2
DT_NULL, DT_NEEDED, DT_RPATH, DT_RUNPATH = 0, 1, 15, 29


@dataclass(frozen=True)
class ElfInfo:
    interpreter: str  # PT_INTERP, "" when none (shared libraries, static programs)
    needed: int  # number of DT_NEEDED entries
    rpath: bool
    runpath: bool


def elf_info(path: Path) -> ElfInfo | None:
    """PT_INTERP and dynamic tags of an ELF file, or None when it is not ELF. Reads the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
                return None
            is64, end = head[4] == 2, "<" if head[5] == 1 else ">"
            interp, dyn = "", b""
            for ptype, offset, filesz in _program_headers(f, head, is64, end):
                if ptype in (PT_INTERP, PT_DYNAMIC):
                    f.seek(offset)
                    data = f.read(filesz)
                    if ptype == PT_INTERP:
                        interp = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                    else:
                        dyn = data
    except (OSError, struct.error):
        return None
    fmt = end + ("qQ" if is64 else "iI")
    tags = []
    for tag, _ in struct.iter_unpack(fmt, dyn[: len(dyn) - len(dyn) % struct.calcsize(fmt)]):
        if tag == DT_NULL:
            break
        tags.append(tag)
    return ElfInfo(interp, tags.count(DT_NEEDED), DT_RPATH in tags, DT_RUNPATH in tags)


def _program_headers(f, head: bytes, is64: bool, end: str):
    """(p_type, p_offset, p_filesz) of each program header (elf(5))."""
    if is64:
        (phoff,), (phentsize, phnum) = struct.unpack_from(end + "Q", head, 32), struct.unpack_from(end + "HH", head, 54)
    else:
        (phoff,), (phentsize, phnum) = struct.unpack_from(end + "I", head, 28), struct.unpack_from(end + "HH", head, 42)
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        ph = f.read(phentsize)
        if is64:
            yield struct.unpack_from(end + "I", ph, 0)[0], struct.unpack_from(end + "Q", ph, 8)[0], struct.unpack_from(end + "Q", ph, 32)[0]
        else:
            ptype, offset = struct.unpack_from(end + "II", ph, 0)
            yield ptype, offset, struct.unpack_from(end + "I", ph, 16)[0]


@dataclass(frozen=True)
class Privatized:
    libraries: int  # entries moved into usr/lib/envbox/<tag>
    patched: tuple[str, ...]  # layer paths whose interpreter or rpath now points there


def privatize(root: Path, tag: str, *, patchelf: Path, env: Mapping[str, str]) -> Privatized:
    """Keep the layer's libraries out of the shared /usr/lib: only the layer's programs use them.

    Everything under usr/lib/<multiarch>/ moves to usr/lib/envbox/<tag>/, so nothing of the
    layer shadows the host's libc, libssl... (host programs in the namespace keep theirs).
    Every ELF program of the layer gets that dir's loader as PT_INTERP and the dir as DT_RPATH.
    It must be DT_RPATH: a DT_RUNPATH applies only to the object's own DT_NEEDED, while the
    program's DT_RPATH is also searched for the dependencies of libraries and of dlopen()ed
    modules (lib-dynload/_ssl.so -> libssl), ld.so(8).
    """
    root = Path(root)
    private = root / "usr" / "lib" / "envbox" / tag
    private.mkdir(parents=True, exist_ok=True)
    moved = 0
    for libdir in sorted((root / "usr" / "lib").glob("*-linux-gnu*")):
        if libdir.is_dir() and not libdir.is_symlink():
            moved += _move_tree(libdir, private)
            libdir.rmdir()
    lib64 = root / "usr" / "lib64"
    if lib64.is_dir() and not lib64.is_symlink():
        for entry in sorted(lib64.iterdir()):
            if os.path.lexists(private / entry.name):
                entry.unlink()  # the ld.so link into usr/lib/<multiarch>, whose target moved
            else:
                os.rename(entry, private / entry.name)
                moved += 1
        lib64.rmdir()
    target = f"/usr/lib/envbox/{tag}"
    patched = []
    for path in _files(root):
        info = elf_info(path)
        if info is None or not (info.interpreter or info.runpath):
            continue
        inside = path.is_relative_to(private)
        argv = [str(patchelf)]
        loader = private / Path(info.interpreter).name if info.interpreter else None
        if info.interpreter and not inside and loader is not None and loader.is_file():
            argv += ["--set-interpreter", f"{target}/{loader.name}"]
        if info.runpath or (info.interpreter and not inside):
            old = _patchelf_out([str(patchelf), "--print-rpath", str(path)], env)
            entries = [e for e in old.split(":") if e and e != target]
            argv += ["--force-rpath", "--set-rpath", ":".join([target, *entries])]
        if len(argv) > 1:
            _patchelf_out([*argv, str(path)], env)
            patched.append(str(path.relative_to(root)))
    return Privatized(moved, tuple(patched))


def _move_tree(src: Path, dst: Path) -> int:
    count = 0
    for entry in sorted(src.iterdir()):
        to = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and to.is_dir():
            count += _move_tree(entry, to)
            entry.rmdir()
        elif os.path.lexists(to):
            raise BuildError(f"private libraries: {to.name} exists twice", "report this layer's package list")
        else:
            os.rename(entry, to)
            count += 1
    return count


def _files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _patchelf_out(argv: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(argv, env={"PATH": DEFAULT_PATH, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"patchelf failed on {argv[-1]}: {result.stderr.strip()[-200:]}", "report the package; run without `private:` meanwhile")
    return result.stdout.strip()
