"""Boot a stock Debian guest under QEMU and run one command in it. Stdlib only.

Images (tests/vm/image.sh) are cached in $ENVBOX_VM_CACHE (default /var/cache/envbox-vm) under a
hash of their recipe; a boot never writes to them (each boot gets a throw-away qcow2 overlay).
The checkout is shared read-only over 9p; a per-run directory, shared read-write, carries the
command in and its output, exit status and the guest's facts out (guest/envbox-vm-run).

Driven by tests/vm/run (the command line) and tests/vm/conftest.py (pytest); never imports envbox.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUITES = ("bookworm", "trixie")
CACHE = Path(os.environ.get("ENVBOX_VM_CACHE", "/var/cache/envbox-vm"))
QEMU = "qemu-system-x86_64"


class VMError(Exception):
    """The machine cannot build or boot a guest; the message says why."""


def _say(msg: str) -> None:
    print(f"envbox-vm: {msg}", file=sys.stderr, flush=True)


# --- images ---------------------------------------------------------------------------------

def _ca_files() -> list[Path]:
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


def recipe_hash(suite: str) -> str:
    """Everything that goes into an image: the recipe, the files baked in, the suite, the host CAs.
    (guest/envbox-vm-run is not baked in: guests run it from the shared checkout.)"""
    h = hashlib.sha256(suite.encode())
    baked = [HERE / "image.sh", *(HERE / "guest" / n for n in ("customize.sh", "envbox-vm.service", "envbox-vm-boot"))]
    for path in [*baked, *_ca_files()]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def image_dir(suite: str) -> Path:
    return CACHE / f"{suite}-{recipe_hash(suite)}"


def why_cannot_build() -> str | None:
    if os.geteuid() != 0:
        return "building a VM image needs root (mmdebstrap in root mode, ext4 with owners kept)"
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img", QEMU):
        if not shutil.which(tool):
            return f"{tool} is not installed (tests/run installs qemu-system-x86, qemu-utils, mmdebstrap)"
    return None


def why_cannot_boot() -> str | None:
    for tool in (QEMU, "qemu-img"):
        if not shutil.which(tool):
            return f"{tool} is not installed (tests/run installs qemu-system-x86 and qemu-utils)"
    return None


def ensure_image(suite: str) -> Path:
    """The cached image for suite, built first when its recipe changed. Safe to race."""
    if suite not in SUITES:
        raise VMError(f"unknown suite {suite!r} (known: {', '.join(SUITES)})")
    final = image_dir(suite)
    if (final / "ready").exists():
        return final
    why = why_cannot_build()
    if why:
        raise VMError(why)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{suite}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per suite; the others wait, then reuse
        if (final / "ready").exists():
            return final
        work = CACHE / f".build-{final.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        _say(f"building the {suite} image (recipe {final.name}); log in {work}.log")
        started = time.monotonic()
        with open(f"{work}.log", "w") as log:
            rc = subprocess.run(["sh", str(HERE / "image.sh"), suite, str(work)], stdout=log, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = Path(f"{work}.log").read_text(errors="replace").splitlines()[-15:]
            shutil.rmtree(work, ignore_errors=True)
            raise VMError(f"building the {suite} image failed (exit {rc}):\n" + "\n".join(tail))
        took = time.monotonic() - started
        (work / "build-seconds").write_text(f"{took:.1f}\n")
        (work / "ready").touch()
        os.rename(work, final)
        os.replace(f"{work}.log", final / "build.log")
        _say(f"{suite} image built in {took:.0f} s")
        for old in CACHE.glob(f"{suite}-*"):  # earlier recipes: nothing refers to them any more
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return final


def ensure_wheels() -> Path:
    """A wheel directory with envbox's dependencies and pytest for every guest's Python, so a
    run installs offline (pip --no-index in the guest). Fetched by the host's pip once."""
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = sorted({*meta["build-system"]["requires"], *meta["project"]["dependencies"],
                   *meta["project"].get("optional-dependencies", {}).get("test", []), "wheel"})
    pythons = ("3.11", "3.13")  # bookworm, trixie
    key = hashlib.sha256(repr((reqs, pythons)).encode()).hexdigest()[:12]
    final = CACHE / f"wheels-{key}"
    if (final / "wheels" / ".ready").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "wheels.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "wheels" / ".ready").exists():
            return final
        (final / "wheels").mkdir(parents=True, exist_ok=True)
        for py in pythons:
            abi = "cp" + py.replace(".", "")
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                   "--only-binary=:all:", "--python-version", py, "--implementation", "cp", "--abi", abi,
                   "--abi", "abi3", "--abi", "none", "--platform", "manylinux2014_x86_64",
                   "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
                   "--platform", "any", "-d", str(final / "wheels"), *reqs]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise VMError(f"pip download for python {py} failed:\n{result.stderr[-2000:]}")
        (final / "wheels" / ".ready").touch()
    return final


# --- acceleration ---------------------------------------------------------------------------

def _qemu_version() -> str:
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
    return out.split("\n")[0].split("version")[-1].strip().split()[0] if out else "unknown"


def choose_accel(image: Path) -> tuple[str, str]:
    """('kvm'|'tcg', why). KVM only when it boots the stock kernel this machine was asked to
    boot: some hypervisors expose /dev/kvm yet never run a Debian kernel (not a byte on the
    console). The probe's verdict is cached per host kernel and QEMU version."""
    forced = os.environ.get("ENVBOX_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, f"ENVBOX_VM_ACCEL={forced}"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is missing or not usable by this user"
    verdict_file = CACHE / f"kvm-verdict-{os.uname().release}-{_qemu_version()}-{image.name}"
    if verdict_file.exists():
        verdict = verdict_file.read_text().strip()
    else:
        verdict = "works" if _kvm_boots(image) else "no-boot"
        CACHE.mkdir(parents=True, exist_ok=True)
        verdict_file.write_text(verdict + "\n")
    if verdict == "works":
        return "kvm", "KVM boots the stock kernel"
    return "tcg", f"/dev/kvm exists but does not boot the stock kernel (probe cached in {verdict_file})"


def _kvm_boots(image: Path, seconds: float = 15) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        serial = Path(tmp) / "serial"
        proc = subprocess.Popen(
            [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "512", "-nodefaults", "-display", "none",
             "-serial", f"file:{serial}", "-no-reboot", "-kernel", str(image / "vmlinuz"),
             "-append", "console=ttyS0 panic=-1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + seconds
        ok = False
        while time.monotonic() < deadline and proc.poll() is None:
            if serial.exists() and b"Linux version" in serial.read_bytes():
                ok = True
                break
            time.sleep(0.5)
        proc.kill()
        proc.wait()
        return ok


# --- one run --------------------------------------------------------------------------------

@dataclass
class Result:
    suite: str
    mode: str
    returncode: int
    output: str
    accel: str
    accel_why: str
    facts: dict = field(default_factory=dict)
    boot_seconds: float | None = None  # QEMU start -> the guest runner is about to run the command
    total_seconds: float = 0.0
    timed_out: bool = False
    serial_tail: str = ""
    run_dir: str = ""
    files: dict = field(default_factory=dict)  # io/*.xml the command left (e.g. pytest's junit)

    def describe(self) -> str:
        f = self.facts
        return (f"{self.suite} ({f.get('os', '?')}, kernel {f.get('kernel', '?')}, {f.get('systemd', '?')}, "
                f"{f.get('cgroup', '?')}) as {self.mode}, accel {self.accel} ({self.accel_why})")


def command_script(argv: list[str]) -> str:
    """argv as ssh would run it: one argument is a shell command line; several are quoted."""
    return argv[0] if len(argv) == 1 else shlex.join(argv)


def run(suite: str, argv: list[str], *, user: bool = False, timeout: float = 1800, env: dict | None = None,
        prepare: str | None = None, init: str = "systemd", memory: str = "3G", stream=None,
        keep: bool = False) -> Result:
    """Boot a fresh guest of suite, run argv (as root, or as envboxtest in a login session),
    power off. `prepare` runs as root first (e.g. installing envbox); `init='plain'` boots
    without systemd (a cgroup2-only machine with nobody managing the tree)."""
    why = why_cannot_boot()
    if why:
        raise VMError(why)
    image = ensure_image(suite)
    wheels = ensure_wheels()
    accel, accel_why = choose_accel(image)
    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{suite}-", dir=runs))
    io = tmp / "io"
    io.mkdir()
    io.chmod(0o777)  # the guest's user writes its results here too
    (io / "cmd").write_text(command_script(argv) + "\n")
    (io / "mode").write_text("user\n" if user else "root\n")
    if prepare:
        (io / "prepare").write_text(prepare + "\n")
    if env:
        (io / "env").write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in env.items()))
    overlay = tmp / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image / "root.img"), "-F", "raw", str(overlay)], check=True)
    serial = tmp / "serial.log"
    append = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 systemd.show_status=1 mitigations=off"
    if init == "plain":
        append += " init=/usr/local/sbin/envbox-vm-boot"
    if accel == "kvm":
        machine = ["-accel", "kvm", "-cpu", "host"]
    else:
        machine = ["-accel", "tcg,thread=multi", "-cpu", "max"]
    cmd = [
        QEMU, *machine, "-smp", os.environ.get("ENVBOX_VM_SMP", "2"), "-m", memory,
        "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"), "-append", append,
        "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
        "-virtfs", f"local,path={REPO},mount_tag=src,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={io},mount_tag=io,security_model=none",
        "-virtfs", f"local,path={wheels},mount_tag=cache,security_model=none,readonly=on",
    ]
    (tmp / "qemu.argv").write_text(shlex.join(cmd) + "\n")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "qemu.stderr", "w"))
    boot = None
    sent = 0
    timed_out = False
    try:
        while proc.poll() is None:
            if boot is None and (io / "facts").exists():
                boot = time.monotonic() - started
            sent = _pump(io / "out", sent, stream)
            if time.monotonic() - started > timeout:
                timed_out = True
                proc.kill()
                break
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    sent = _pump(io / "out", sent, stream)
    total = time.monotonic() - started
    facts = _facts(io / "facts")
    output = (io / "out").read_text(errors="replace") if (io / "out").exists() else ""
    rc_file = io / "rc"
    serial_text = serial.read_text(errors="replace") if serial.exists() else ""
    tail = "\n".join(serial_text.splitlines()[-25:])
    if rc_file.exists():
        rc = int(rc_file.read_text().strip() or 255)
    else:
        rc = 124 if timed_out else 255
        err = (tmp / "qemu.stderr").read_text(errors="replace").strip()
        if err:
            tail += "\nqemu: " + err
    files = {p.name: p.read_text(errors="replace") for p in io.glob("*.xml")}
    result = Result(suite, "user" if user else "root", rc, output, accel, accel_why, facts, boot, total, timed_out, tail, str(tmp), files)
    if not keep and rc == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        overlay.unlink(missing_ok=True)  # keep the logs of a failed or hung run, not the disk
    return result


def _pump(path: Path, sent: int, stream) -> int:
    if stream is None or not path.exists():
        return sent
    with open(path, "rb") as f:
        f.seek(sent)
        chunk = f.read()
    if chunk:
        stream.write(chunk.decode(errors="replace"))
        stream.flush()
    return sent + len(chunk)


def _facts(path: Path) -> dict:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out
