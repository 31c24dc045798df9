"""Benchmark envbox against bare exec, unshare, bwrap and firejail, all in one run; write the report.

    sudo /opt/envbox-test/bin/python bench/run.py           # full run -> bench/RESULTS.md, bench/results.png
    sudo /opt/envbox-test/bin/python bench/run.py --smoke   # CI: a few rounds, no cold build -> bench/out/

Launch commands run interleaved (round-robin, order rotated each round); each row reports the
median, p10 and p90 and the median of the per-round ratios to bwrap (and firejail). Targets are
read from the results, never asserted: the exit status is 1 only when a command failed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]  # lib.py; envbox itself (Exec parsing, the deb closure)

import lib  # noqa: E402
from envbox.core.errors import EnvboxError  # noqa: E402
from lib import Cmd, CommandFailed  # noqa: E402

TEST_USER = "envboxtest"
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
HOST_PYTHON = "/usr/bin/python3.11"
LIMITS = "limits: {memory: 512M, cpu: 1, pids: 256}\n"
LONG_PATH = 200  # bytes per layer path in the 400-layer profile: 400 of them overflow a 4 KiB option string 20 times


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---- an isolated envbox user -------------------------------------------------------------------


class Home:
    """envbox's directories for one user under the scratch dir, the environment that points
    envbox at them, and the fast launcher on PATH (desktop entries name the `envbox` on PATH)."""

    def __init__(self, root: Path, launcher_dir: Path, user: str | None = None):
        self.root, self.user = root, user
        self.launcher = str(launcher_dir / "envbox")
        names = ("home", "config", "data", "cache", "state", "run", "system")
        self.dirs = {n: root / n for n in names}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        (self.dirs["config"] / "envbox" / "profiles").mkdir(parents=True, exist_ok=True)
        self.dirs["run"].chmod(0o700)  # XDG_RUNTIME_DIR must be private
        self.env = {
            "PATH": f"{launcher_dir}:{SYS_PATH}", "LANG": "C.UTF-8", "HOME": str(self.dirs["home"]),
            "XDG_CONFIG_HOME": str(self.dirs["config"]), "XDG_DATA_HOME": str(self.dirs["data"]),
            "XDG_CACHE_HOME": str(self.dirs["cache"]), "XDG_STATE_HOME": str(self.dirs["state"]),
            "XDG_RUNTIME_DIR": str(self.dirs["run"]), "ENVBOX_SYSTEM_DIR": str(self.dirs["system"]),
        }

    def profile(self, name: str, text: str) -> None:
        (self.dirs["config"] / "envbox" / "profiles" / f"{name}.yaml").write_text(text)

    def hand_over(self) -> None:
        """Give the tree to the user (rootless runs): envbox refuses directories it does not own."""
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in [self.root, *self.root.rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)

    def cmd(self, name: str, label: str, *args: str) -> Cmd:
        return Cmd(name, label, (self.launcher, *args), self.env, str(self.root.parent), self.user)

    def plain(self, name: str, label: str, *argv: str) -> Cmd:
        """Another program, run with the same environment, directory and user as envbox."""
        return Cmd(name, label, argv, self.env, str(self.root.parent), self.user)

    def envbox(self, *args: str) -> str:
        """Run an envbox command that is set-up, not measured; its stdout."""
        extra = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        result = subprocess.run([self.launcher, *args], env=self.env, cwd=str(self.root.parent), capture_output=True, text=True, **extra)
        if result.returncode != 0:
            raise CommandFailed(f"envbox {' '.join(args)} exited {result.returncode}\n{result.stderr[-800:]}")
        return result.stdout


def tool_profile(command: list[str], tools: dict[str, str], extra: str = "") -> str:
    """Profile YAML; json.dumps gives valid YAML double-quoted strings for any path."""
    lines = [f"command: {json.dumps(command)}", "tools:"]
    lines += [f"  {name}: {spec}" for name, spec in tools.items()]
    return "\n".join(lines) + "\n" + extra


def sees(first: str, last: str) -> list[str]:
    """A command that fails unless both the bottom and the top layer's files are visible."""
    return ["/bin/sh", "-c", f"test -e /usr/bin/{first} && test -e /usr/bin/{last}"]


def make_layers(directory: Path, count: int, *, length: int | None = None) -> list[str]:
    """count prefix dirs t001..tNNN, each with bin/tNNN; with length, every path is that many bytes."""
    out = []
    for i in range(1, count + 1):
        name = f"t{i:03d}"
        path = directory / name
        if length is not None:
            path = directory / (name + "-" + "x" * (length - len(str(directory)) - len(name) - 2))
            assert len(str(path)) == length
        (path / "bin").mkdir(parents=True, exist_ok=True)
        exe = path / "bin" / name
        exe.write_text(f"#!/bin/sh\necho {name}\n")
        exe.chmod(0o755)
        out.append(str(path))
    return out


def deep_dir(scratch: Path) -> Path:
    """A deep directory with long names, so each layer path is ~LONG_PATH bytes."""
    parts = ["store-with-a-rather-long-directory-name-one", "and-another-quite-long-directory-name-two", "three-levels-deep"]
    return scratch.joinpath("long", *parts)


def dir_tools(paths: list[str]) -> dict[str, str]:
    return {f"t{i:03d}": "{dir: " + json.dumps(p) + "}" for i, p in enumerate(paths, 1)}


# ---- set-up ----------------------------------------------------------------------------------


def ensure_tools(notes: list[str]) -> None:
    """bwrap and firejail from Debian when missing (root only); otherwise their rows are skipped."""
    wanted = {"bwrap": "bubblewrap", "firejail": "firejail"}
    missing = [pkg for exe, pkg in wanted.items() if not shutil.which(exe)]
    if not missing:
        return
    say(f"installing {' '.join(missing)} with apt-get")
    env = {"PATH": SYS_PATH, "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    for exe, pkg in wanted.items():
        if not shutil.which(exe):
            notes.append(f"{exe} is not installed and `apt-get install {pkg}` failed: its rows are skipped.")


def write_launcher(python: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "envbox.main", "--write-launcher", str(dest)], cwd=REPO, check=True)
    dest.chmod(0o755)


def desktop_exec(home: Home, profile: str) -> tuple[str, ...]:
    """The argv of the Exec line `envbox desktop install` writes, field codes dropped."""
    from envbox.desktop.entries import FieldCode, parse_exec

    home.envbox("desktop", "install", profile)
    entry = home.dirs["data"] / "applications" / f"envbox-{profile}.desktop"
    group = ""
    for line in entry.read_text().splitlines():
        if line.startswith("["):
            group = line
        elif group == "[Desktop Entry]" and line.startswith("Exec="):
            return tuple(a for a in parse_exec(line[len("Exec="):]) if not isinstance(a, FieldCode))
    raise CommandFailed(f"{entry} has no Exec line")


def root_setup(scratch: Path, launcher_dir: Path, python: str, notes: list[str]) -> tuple[Home, list[Cmd], dict]:
    """Profiles, layer directories and the commands of the root group, in the order shown.

    The many-layer profiles live in a home of their own: `envbox list` parses every profile,
    and a 400-tool profile is no user's typical set."""
    home = Home(scratch / "root", launcher_dir)
    host = {"python": "{host: " + HOST_PYTHON + "}"}
    for name, command, extra in (("p1", "/bin/true", ""), ("plim", "/bin/true", LIMITS), ("psleep", "/bin/sleep", ""),
                                 ("psleeplim", "/bin/sleep", LIMITS)):
        home.profile(name, tool_profile([command], host, extra))
    exec_argv = desktop_exec(home, "p1")
    layers, facts = layers_setup(scratch, launcher_dir, notes)
    cmds = [
        home.plain("true", "/bin/true", "/bin/true"),
        home.plain("unshare", "unshare --mount /bin/true", "unshare", "--mount", "/bin/true"),
        home.plain("bwrap", "bwrap --dev-bind / / /bin/true", "bwrap", "--dev-bind", "/", "/", "/bin/true"),
        home.plain("firejail", "firejail --noprofile /bin/true", "firejail", "--noprofile", "/bin/true"),
        # The floor under any launcher written in Python: the interpreter starting and exiting.
        home.plain("python", "python -SI -c pass (envbox's interpreter)", python, "-SI", "-c", "pass"),
        home.cmd("envbox", "envbox launch p1 -- /bin/true", "launch", "p1", "--", "/bin/true"),
        Cmd("desktop", "desktop Exec: " + " ".join(Path(a).name if i == 0 else a for i, a in enumerate(exec_argv)),
            exec_argv, home.env, str(scratch)),
        home.cmd("limits", "envbox launch plim (memory+cpu+pids)", "launch", "plim", "--", "/bin/true"),
        layers.cmd("layers2", "envbox launch p2 (2 layers)", "launch", "p2"),
        layers.cmd("layers100", "envbox launch p100 (100 layers)", "launch", "p100"),
        layers.cmd("layers400", f"envbox launch p400 (400 layers, {LONG_PATH}-byte paths)", "launch", "p400"),
        home.cmd("help", "envbox --help", "--help"),
        home.cmd("list", "envbox list", "list"),
    ]
    return home, [c for c in cmds if shutil.which(c.argv[0])], facts


def layers_setup(scratch: Path, launcher_dir: Path, notes: list[str]) -> tuple[Home, dict]:
    """2 and 100 short `dir:` layers, and 400 with LONG_PATH-byte paths under a deep directory."""
    home = Home(scratch / "layers", launcher_dir)
    short = make_layers(scratch / "prefixes", 100)
    long = make_layers(deep_dir(scratch), 400, length=LONG_PATH)
    for name in ("t001", "t002", "t100", "t400"):
        if os.path.lexists(f"/usr/bin/{name}"):
            notes.append(f"/usr/bin/{name} exists on the host: the layer visibility check proves less.")
    home.profile("p2", tool_profile(sees("t001", "t002"), dir_tools(short[:2])))
    home.profile("p100", tool_profile(sees("t001", "t100"), dir_tools(short)))
    home.profile("p400", tool_profile(sees("t001", "t400"), dir_tools(long)))
    return home, {"lowerdir_bytes": sum(len(p) + 1 for p in long), "layer_path": len(long[0])}


def rootless_setup(scratch: Path, launcher_dir: Path, notes: list[str]) -> list[Cmd]:
    """The unprivileged group; empty (with a note) when the user cannot even run envbox's
    interpreter over this checkout, e.g. a clone below a directory only root may enter."""
    home = Home(scratch / "user", launcher_dir, TEST_USER)
    home.profile("p1", tool_profile(["/bin/true"], {"python": "{host: " + HOST_PYTHON + "}"}))
    home.hand_over()
    try:
        home.envbox("--help")
    except CommandFailed as exc:
        notes.append(f"{TEST_USER} cannot run envbox from {REPO} ({str(exc).splitlines()[-1]}): the rootless rows are skipped.")
        return []
    cmds = [
        home.plain("u-true", "/bin/true", "/bin/true"),
        home.plain("u-unshare", "unshare -r -m /bin/true", "unshare", "-r", "-m", "/bin/true"),
        home.plain("u-bwrap", "bwrap --unshare-user --dev-bind / / /bin/true", "bwrap", "--unshare-user", "--dev-bind", "/", "/", "/bin/true"),
        home.cmd("u-envbox", "envbox launch p1 -- /bin/true", "launch", "p1", "--", "/bin/true"),
    ]
    return [c for c in cmds if shutil.which(c.argv[0])]


# ---- measurements ----------------------------------------------------------------------------


def measure_memory(home: Home, samples: int) -> dict[str, list[int]]:
    """VmRSS (KiB) of the envbox process itself while the app (sleep) runs; with and without limits."""
    out = {}
    for profile in ("psleep", "psleeplim"):
        lib.run_timed(home.cmd("warm", "", "launch", profile, "--", "0"))  # builds and caches the plan
        cmd = home.cmd(profile, "", "launch", profile, "--", "0.5")
        out[profile] = [lib.rss_while_running(cmd, "sleep") for _ in range(samples)]
    return out


def measure_concurrent(cmd: Cmd, count: int, batches: int) -> dict:
    latencies, failures = [], []
    for b in range(batches):
        start = time.perf_counter()
        got, failed = lib.concurrent(cmd, count)
        say(f"  batch {b + 1}/{batches}: {len(got)}/{count} ok in {time.perf_counter() - start:.2f} s")
        latencies += got
        failures += failed
    return {"count": count, "batches": batches, "latencies": latencies, "failures": failures}


# ---- cold build: envbox vs apt-get download + dpkg-deb -x -----------------------------------------


def build_packages(home: Home) -> tuple[list, str]:
    """The closure envbox builds for python 2.7, from the same (warm) lists envbox just used."""
    from envbox.store.build import HELPER_ENV
    from envbox.core.catalog import builtin_dir, load_catalog, pick
    from envbox.sources import BuildContext, checks, deb

    release = pick(load_catalog((builtin_dir(),), checks()), "python", "2.7")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = BuildContext(root=Path(tmp), work=Path(tmp), downloads=home.dirs["cache"] / "envbox" / "downloads", helper_env=dict(HELPER_ENV))
        closure = deb.resolve(release.source, ctx, mirror=deb.DEBIAN, status=deb.HOST_STATUS, arch=deb.host_arch(HELPER_ENV))
    return list(closure.packages), release.source["suite"]


def apt_base(home: Home, base: Path, suite: str) -> dict:
    """An apt configuration of its own (like envbox's: no host apt state) over a copy of envbox's
    warm lists; the environment to run apt-get with."""
    from envbox.store.build import HELPER_ENV
    from envbox.sources import deb

    arch = deb.host_arch(HELPER_ENV)
    found = glob.glob(str(home.dirs["cache"] / "envbox" / "downloads" / "apt" / f"{suite}-{arch}-*" / "lists"))
    if len(found) != 1:
        raise CommandFailed(f"expected one apt lists directory of envbox for {suite}, found {found}")
    shutil.copytree(found[0], base / "lists", ignore=shutil.ignore_patterns("lock", "partial"))
    for d in ("state", "cache", "log", "lists/partial"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "state" / "status").touch()
    (base / "sources.list").write_text(deb.DEBIAN.sources_list(suite))
    (base / "apt.conf").write_text(deb.apt_config(base, arch))
    return {**HELPER_ENV, "APT_CONFIG": str(base / "apt.conf")}


def apt_side(packages: list, work: Path, env: dict) -> float:
    """Seconds for `apt-get download` of every package into an empty directory, then `dpkg-deb -x` of each."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "debs").mkdir(parents=True)
    (work / "root").mkdir()
    start = time.perf_counter()
    specs = [f"{p.name}={p.version}" for p in packages]
    result = subprocess.run(["apt-get", "-q", "download", *specs], cwd=work / "debs", env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(f"apt-get download exited {result.returncode}\n{result.stderr[-800:]}")
    debs = sorted((work / "debs").glob("*.deb"))
    for path in debs:
        subprocess.run(["dpkg-deb", "-x", str(path), str(work / "root")], env=env, check=True)
    elapsed = time.perf_counter() - start
    if len(debs) != len(packages):
        raise CommandFailed(f"apt-get download fetched {len(debs)} of {len(packages)} packages")
    return elapsed


def envbox_side(home: Home) -> float:
    """Seconds for `envbox build py27` with an empty store and download cache (apt lists kept)."""
    shutil.rmtree(home.dirs["data"] / "envbox" / "store", ignore_errors=True)
    downloads = home.dirs["cache"] / "envbox" / "downloads"
    for entry in downloads.iterdir():
        if entry.name == "apt":
            continue  # the lists stay warm, as on apt's side
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return lib.run_timed(home.cmd("build", "envbox build py27", "build", "py27"), timeout=1800) / 1000


def measure_build(scratch: Path, launcher_dir: Path, rounds: int) -> dict:
    home = Home(scratch / "build", launcher_dir)
    home.profile("py27", 'command: [/usr/bin/python]\ntools:\n  python: "2.7"\n')
    say("  warm-up build (fetches the apt lists, untimed)")
    home.envbox("build", "py27")
    packages, suite = build_packages(home)
    env = apt_base(home, scratch / "apt", suite)
    times = {"envbox": [], "apt": []}
    for r in range(rounds):
        sides = [("envbox", lambda: envbox_side(home)), ("apt", lambda: apt_side(packages, scratch / "apt-work", env))]
        for name, run in sides if r % 2 == 0 else sides[::-1]:  # alternate who goes first
            times[name].append(run())
        say(f"  round {r + 1}/{rounds}: envbox {times['envbox'][-1]:.2f} s, apt {times['apt'][-1]:.2f} s")
    return {"times": times, "packages": [f"{p.name} {p.version}" for p in packages],
            "bytes": sum(p.size for p in packages)}


# ---- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="few rounds, no cold build, results into bench/out/")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 50, smoke 3)")
    parser.add_argument("--build-rounds", type=int, help="cold build rounds (default 3, smoke 0)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter envbox is installed in (default: this one)")
    parser.add_argument("--out", type=Path, help="where RESULTS.md and results.png go")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.smoke else 50)
    args.build_rounds = args.build_rounds if args.build_rounds is not None else (0 if args.smoke else 3)
    args.out = args.out or (HERE / "out" if args.smoke else HERE)
    args.batches = 1 if args.smoke else 3
    args.samples = 1 if args.smoke else 5
    return args


def run_all(args: argparse.Namespace, scratch: Path, notes: list[str]) -> dict:
    launcher_dir = scratch / "bin"
    write_launcher(args.python, launcher_dir / "envbox")
    results: dict = {"notes": notes}
    say("root: setting up profiles, layers and the desktop entry")
    home, cmds, results["layers"] = root_setup(scratch, launcher_dir, args.python, notes)
    say(f"root: {len(cmds)} commands x {args.rounds} rounds, interleaved")
    results["root"] = {"cmds": cmds, "times": lib.interleave(cmds, args.rounds, progress=say)}
    results["rootless"], ucmds = None, []
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        notes.append(f"user {TEST_USER} does not exist: the rootless rows are skipped.")
    else:
        ucmds = rootless_setup(scratch, launcher_dir, notes)
    if ucmds:
        say(f"rootless ({TEST_USER}): {len(ucmds)} commands x {args.rounds} rounds, interleaved")
        results["rootless"] = {"cmds": ucmds, "times": lib.interleave(ucmds, args.rounds, progress=say)}
    say(f"concurrency: {args.batches} x 50 launches at once")
    results["concurrent"] = measure_concurrent(home.cmd("envbox", "", "launch", "p1", "--", "/bin/true"), 50, args.batches)
    say("supervisor memory")
    results["memory"] = measure_memory(home, args.samples)
    results["build"] = None
    if args.build_rounds:
        say(f"cold build of python 2.7: {args.build_rounds} rounds, interleaved with apt-get download + dpkg-deb -x")
        results["build"] = measure_build(scratch, launcher_dir, args.build_rounds)
    else:
        notes.append("cold build skipped (--smoke or --build-rounds 0).")
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        say("run as root (the limits, `unshare --mount` and the switch to the test user need it)")
        return 2
    notes: list[str] = []
    ensure_tools(notes)
    started = datetime.datetime.now(datetime.timezone.utc)
    scratch = Path(tempfile.mkdtemp(prefix="envbox-bench-", dir="/tmp"))
    scratch.chmod(0o755)  # the test user must reach its own directories below
    try:
        results = run_all(args, scratch, notes)
    except (CommandFailed, EnvboxError, subprocess.SubprocessError, OSError) as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {"machine": lib.machine(REPO, args.python), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "smoke" if args.smoke else "full", "rounds": args.rounds,
            "command": "sudo /opt/envbox-test/bin/python bench/run.py" + (" --smoke" if args.smoke else "")}
    lib.write_report(args.out, results, meta, log=say)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
