"""The one way the CLI prints rows: aligned text tables that wrap at words, or JSON. Pure but
for `emit` (which prints) and `terminal_width` (which asks the terminal)."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass
from typing import Callable, Sequence

from envbox.core.names import printable

GAP = "  "
MIN_WRAP = 16  # a wrapping column never gets narrower than this


@dataclass(frozen=True)
class Col:
    """A column: its header, right-aligned (numbers) or not, and whether it may wrap."""

    header: str
    right: bool = False
    wrap: bool = False


def terminal_width() -> int:
    """The terminal's width ($COLUMNS first); 100 when output is not a terminal."""
    return shutil.get_terminal_size((100, 24)).columns


def _lines(text: str, width: int | None) -> list[str]:
    if width is None or len(text) <= width:
        return [text]
    # Never cut a word: a word longer than the column stays whole and overflows it.
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def table(cols: Sequence[Col], rows: Sequence[Sequence[str]], *, width: int | None = None) -> str:
    """Rows under a header row; columns as wide as their widest cell. When the table is wider
    than `width` (the terminal's by default), the wrapping columns share what is left and
    their cells continue on the next lines, at word boundaries. A last column that does not
    wrap (a path) is left out of the budget: it may run past the edge, where it breaks nothing."""
    width = terminal_width() if width is None else width
    cells = [[printable(c) for c in row] for row in rows]  # escaped before widths are measured
    natural = [max([len(col.header)] + [len(row[i]) for row in cells]) for i, col in enumerate(cols)]
    limits: list[int | None] = [None] * len(cols)
    budgeted = range(len(cols) if cols[-1].wrap else len(cols) - 1)
    wrapping = [i for i in budgeted if cols[i].wrap]
    gaps = len(GAP) * len(budgeted)
    if sum(natural[i] for i in budgeted) + gaps > width and wrapping:
        fixed = sum(natural[i] for i in budgeted if i not in wrapping) + gaps
        share = (width - fixed) // len(wrapping)
        for i in wrapping:
            longest_word = max((len(w) for row in cells for w in row[i].split()), default=0)
            limits[i] = min(natural[i], max(share, MIN_WRAP, longest_word))
    widths = [limits[i] or natural[i] for i in range(len(cols))]
    out = []
    for row in [[col.header for col in cols]] + cells:
        parts = [_lines(cell, limits[i]) for i, cell in enumerate(row)]
        for n in range(max(len(p) for p in parts)):
            line = []
            for i, col in enumerate(cols):
                text = parts[i][n] if n < len(parts[i]) else ""
                line.append(text.rjust(widths[i]) if col.right else text.ljust(widths[i]))
            out.append(GAP.join(line).rstrip())
    return "\n".join(out)


def emit(rows, *, as_json: bool, render: Callable[[object], str]) -> None:
    """Print rows as JSON (--json: machine-readable, stable keys; json escapes control
    characters itself) or as render(rows), every line escaped by names.printable: rows carry
    names, paths and commands from records and files another program may have written."""
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        from envbox.cli.common import echo

        echo(render(rows))
