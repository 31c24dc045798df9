#!/usr/bin/env bash
# Install envbox for the invoking user; idempotent.
#
#   ./install.sh            install (or update) envbox
#   ./install.sh --demo     install, then run the bundled demo (two apps, two Pythons at /usr/bin/python)
#
# Where it goes: a venv on the system python (/usr/bin/python3, >= 3.11) at
# $XDG_DATA_HOME/envbox/venv (default ~/.local/share/envbox/venv); the `envbox` command is
# linked into ~/.local/bin, or /usr/local/bin when run as root.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
demo=0
for arg in "$@"; do
    case "$arg" in
        --demo) demo=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'install.sh: %s\n' "$*" >&2; }

python=/usr/bin/python3
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "envbox needs $python (3.11 or newer); on Debian 12: apt-get install python3"
    exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        say "installing python3-venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        say "python3-venv is missing; ask an administrator to run: apt-get install python3-venv"
        exit 1
    fi
fi

data=${XDG_DATA_HOME:-$HOME/.local/share}/envbox
venv=$data/venv
if [ "$(id -u)" -eq 0 ]; then bindir=/usr/local/bin; else bindir=$HOME/.local/bin; fi

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "updating envbox in $venv"
else
    say "creating $venv"
    rm -rf "$venv"
    mkdir -p "$data"
    "$python" -m venv "$venv"
fi
# A plain (not editable) install, built from a temporary copy of the sources: the build writes
# build/ and *.egg-info/ into the copy, never into the checkout, and the checkout can move or
# go away afterwards.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
tar -C "$src" --exclude=__pycache__ -cf - pyproject.toml README.md envbox profiles | tar -C "$stage" -xf -
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade "$stage" 2>&1 | grep -v '^WARNING: Location' >&2 || true
rm -rf "$stage"  # now, not only on exit: --demo below replaces this shell
# -I everywhere below: the working directory (maybe this checkout) is never on the import path,
# so what runs is the installed package and nothing writes __pycache__ into the checkout.
(cd / && "$venv/bin/python" -I -c 'import envbox.cli.commands') || { say "the install in $venv is broken"; exit 1; }
# Replace pip's console script with envbox's own launcher: the venv's python with -SI (no site
# import on the fast launch path; PYTHON* variables and the user's site ignored).
(cd / && "$venv/bin/python" -I -m envbox.main --write-launcher "$venv/bin/envbox")

mkdir -p "$bindir"
ln -sfn "$venv/bin/envbox" "$bindir/envbox"
say "installed $("$venv/bin/envbox" --version) -> $bindir/envbox"
case ":$PATH:" in
    *":$bindir:"*) ;;
    *) say "note: $bindir is not on your PATH; add it, e.g. export PATH=\"$bindir:\$PATH\"" ;;
esac

if [ "$demo" -eq 1 ]; then
    exec "$src/examples/demo.sh" "$bindir/envbox"
fi
