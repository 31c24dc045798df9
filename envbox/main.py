"""The `envbox` entry point. Stdlib only: it hands over to the typer CLI."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    from .cli import run_cli

    sys.exit(run_cli(argv))


if __name__ == "__main__":
    main()
