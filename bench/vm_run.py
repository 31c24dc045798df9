"""The VM benchmark: warm launch without and with limits, beside bwrap and systemd-run scopes,
in stock Debian guests (tests/vm), as root and as a user in a login session.

    sudo python3 bench/vm_run.py [--rounds 30] [--suites bookworm trixie]

Writes bench/VM-RESULTS.md. Under TCG absolute times are several times a real machine's; the
ratios (to bwrap, and limited envbox to `systemd-run --scope`) are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "vm"))
import vm  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--suites", nargs="+", default=list(vm.SUITES))
    ap.add_argument("--out", default=str(HERE / "VM-RESULTS.md"))
    args = ap.parse_args()
    rows, failed = [], []
    # One boot per suite (the install inside a TCG guest costs minutes): root first, then
    # envboxtest in a login session (su -l through pam_systemd, as tests/vm/guest/stage.sh does).
    guest = (f"/usr/bin/python3 bench/vm_guest.py {args.rounds} /mnt/io/bench-root.xml && "
             "XDG_SESSION_CLASS=user XDG_SESSION_TYPE=tty su -l envboxtest -c "
             f"'cd /srv/envbox && /usr/bin/python3 bench/vm_guest.py {args.rounds} /mnt/io/bench-user.xml' < /dev/null")
    for suite in args.suites:
        started = time.monotonic()
        r = vm.run(suite, [guest], prepare="tests/run --install-only >/dev/null", timeout=3600, stream=sys.stderr)
        if r.returncode != 0:
            print(f"vm_run: {suite} failed (exit {r.returncode}):\n{r.output[-2000:]}\n{r.serial_tail}", file=sys.stderr)
            failed.append(f"{suite}: the guest's run ended with exit {r.returncode}; its parts that finished are above")
        for mode in ("root", "user"):
            if f"bench-{mode}.xml" not in r.files:
                failed.append(f"{suite} as {mode}: no results")
                continue
            r.mode = mode
            rows.append((suite, vm.Result(**{**r.__dict__}), json.loads(r.files[f"bench-{mode}.xml"]), time.monotonic() - started))
    lines = ["# envbox in stock Debian guests (QEMU)", "",
             f"`sudo python3 bench/vm_run.py --rounds {args.rounds}`; {time.strftime('%Y-%m-%d', time.gmtime())}; host: "
             f"{os.cpu_count()} cores, kernel {os.uname().release}. Medians of interleaved rounds, in ms; ratios are what "
             "to read (TCG inflates every absolute time).", ""]
    for suite, r, data, took in rows:
        med = data["median_ms"]
        names = list(med)
        bw = med[names[1]]
        scope_lim = med[names[5]]
        lines += [f"## {suite} as {r.mode} ({r.describe().split(' as ')[0]}; accel {r.accel})", "",
                  f"booted in {r.boot_seconds:.1f} s; install {r.facts.get('prepare_seconds', '?')} s; whole boot {took:.0f} s", "",
                  "| command | median | p10 / p90 | × bwrap |", "|---|---:|---:|---:|"]
        for name in names:
            lines.append(f"| `{name}` | {med[name]:.1f} | {data['p10_ms'][name]:.1f} / {data['p90_ms'][name]:.1f} | {med[name] / bw:.2f} |")
        for name, errors in data.get("failed", {}).items():
            lines.append(f"\n`{name}` failed in {len(errors)} of {data['rounds']} rounds (not timed); first: `{errors[0]}`")
        lines += ["", f"envbox launch with limits / `systemd-run{' --user' if r.mode == 'user' else ''} --scope` with the same limits: "
                  f"**{med[names[3]] / scope_lim:.2f}**; limits cost envbox {med[names[3]] - med[names[2]]:.1f} ms "
                  f"({med[names[3]] / med[names[2]]:.2f}×).", ""]
    if failed:
        lines += ["## Not measured", "", *(f"- {what}" for what in failed), ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
