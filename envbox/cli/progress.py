"""What a build is doing, shown while it runs: one live display on a terminal (the phase with
a spinner and its time, downloads with bytes, rate and time left), a line per phase otherwise.
Notes nobody can act on appear only with --verbose. See envbox.sources for the protocol."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Display:
    """A progress callable for prepare()/ensure_layers(); use as a context manager so the live
    display is gone before the app gets the terminal."""

    def __init__(self, *, verbose: bool = False, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.live = self.stream.isatty() if live is None else live
        self._progress = None  # rich.progress.Progress, made on the first report
        self._phase = None  # the task id of the current phase
        self._bytes: dict[str, tuple[int, float]] = {}  # label -> (task id, first report time)

    def __enter__(self) -> "Display":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, text: str) -> None:
        self.phase(text)

    def phase(self, text: str) -> None:
        from envbox.core.names import printable

        text = printable(text)  # labels and URLs come from catalogs another party may have written
        rich = self._rich()
        if rich is None:
            print(f"envbox: {text}", file=self.stream, flush=True)
            return
        if self._phase is not None:
            rich.remove_task(self._phase)
            self._phase = None
        rich.console.print(f"envbox: {text}", markup=False, highlight=False)
        if not text.startswith("built "):  # the last line of a build: nothing runs after it
            self._phase = rich.add_task(text, total=None, info="")

    def detail(self, text: str) -> None:
        if self.verbose:
            self.phase(text)

    def bytes(self, label: str, done: int, total: int | None) -> None:
        from envbox.core.names import printable

        label = printable(label)
        rich = self._rich()
        if rich is None:
            return  # not a terminal: the phase line said what is downloaded and how much
        now = time.monotonic()
        if label not in self._bytes:
            self._bytes[label] = (rich.add_task(f"downloading {label}", total=total, info=""), now)
        task, first = self._bytes[label]
        rate = done / (now - first) if now > first else 0.0
        info = _amount(done, total)
        if rate > 0:
            info += f", {_size(rate)}/s"
            if total:
                info += f", {max(0.0, (total - done) / rate):.0f} s left"
        rich.update(task, completed=done, total=total, info=info)
        if total is not None and done >= total:
            rich.remove_task(task)
            del self._bytes[label]

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _rich(self):
        if not self.live:
            return None
        if self._progress is None:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            except ImportError:  # typer without rich: lines, as when not on a terminal
                self.live = False
                return None
            console = Console(file=self.stream, force_terminal=True)
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), console=console, transient=True,
            )
            self._progress.start()
        return self._progress


def _size(n: float) -> str:
    from envbox.core.limits import format_size

    return format_size(int(n))


def _amount(done: int, total: int | None) -> str:
    return f"{_size(done)} of {_size(total)}" if total else _size(done)
