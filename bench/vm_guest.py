"""Warm launch inside a tests/vm guest, next to bwrap and systemd-run's scopes. Run by bench/vm_run.py.

    python3 bench/vm_guest.py ROUNDS OUT.json

As root the limited launch goes through systemd's system manager (`systemd-run --scope` is its
neighbour); as a user in a login session through the user manager (`systemd-run --user
--scope`). Rounds are interleaved (every command once per round) so drift hits all alike;
medians and ratios to `/bin/true` and to bwrap are what count: TCG makes absolute times large.
Drives envbox through its command line only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENVBOX = os.path.join(os.environ.get("ENVBOX_TEST_PREFIX", "/opt/envbox-test"), "bin", "envbox")


def main() -> int:
    rounds, out = int(sys.argv[1]), Path(sys.argv[2])
    base = Path(tempfile.mkdtemp(prefix="envbox-bench-"))
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_DATA_HOME=str(base / "data"), XDG_CACHE_HOME=str(base / "cache"),
               XDG_STATE_HOME=str(base / "state"), ENVBOX_SYSTEM_DIR=str(base / "etc"))
    profiles = base / "config" / "envbox" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "p1.yaml").write_text("command: [/bin/true]\ntools:\n  python: {host: /usr/bin/python3}\n")
    (profiles / "p1lim.yaml").write_text("command: [/bin/true]\ntools:\n  python: {host: /usr/bin/python3}\nlimits: {memory: 256M, cpu: 1, pids: 256}\n")
    user = os.getuid() != 0
    scope = ["systemd-run", *(["--user"] if user else []), "--scope", "--quiet", "--collect"]
    cmds = {
        "/bin/true": ["/bin/true"],
        "bwrap --dev-bind / / /bin/true": ["bwrap", "--dev-bind", "/", "/", *(["--unshare-user"] if user else []), "/bin/true"],
        "envbox launch p1 (warm, 1 layer)": [ENVBOX, "launch", "p1"],
        "envbox launch p1lim (memory+cpu+pids)": [ENVBOX, "launch", "p1lim"],
        " ".join(scope) + " /bin/true": [*scope, "/bin/true"],
        " ".join(scope) + " -p MemoryMax=256M /bin/true": [*scope, "-p", "MemoryMax=256M", "-p", "CPUQuota=100%", "-p", "TasksMax=256", "/bin/true"],
    }
    for argv in cmds.values():  # warm: builds layers and the plan cache, fills the page cache
        ok = 0
        for _ in range(5):
            r = subprocess.run(argv, env=env, capture_output=True, text=True)
            if r.returncode == 0:
                ok += 1
                if ok == 2:
                    break
            else:
                print(f"warm-up round failed: {argv}: exit {r.returncode}: {r.stderr.strip()}", file=sys.stderr)
        if ok < 2:
            return 1
    times: dict[str, list[float]] = {k: [] for k in cmds}
    failed: dict[str, list[str]] = {k: [] for k in cmds}  # a failed round is counted, not timed
    for _ in range(rounds):
        for name, argv in cmds.items():
            t = time.perf_counter()
            r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                failed[name].append(f"exit {r.returncode}: {r.stderr.strip()[:400]}")
                continue
            times[name].append((time.perf_counter() - t) * 1000)
    result = {"uid": os.getuid(), "rounds": rounds, "kernel": os.uname().release,
              "median_ms": {k: statistics.median(v) for k, v in times.items()},
              "p10_ms": {k: sorted(v)[len(v) // 10] for k, v in times.items()},
              "p90_ms": {k: sorted(v)[(len(v) * 9) // 10] for k, v in times.items()},
              "failed": {k: v for k, v in failed.items() if v}}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["median_ms"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
