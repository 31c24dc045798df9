"""The build progress display: one updating display on a terminal, a line per phase otherwise."""

from __future__ import annotations

import io

import pytest

from envbox.cli.progress import Display


def _run(display: Display) -> None:
    with display:
        display("building python 2.7.18")
        display.detail("deb: libc6 Breaks locales (<< 2.36)")
        display("deb: downloading 9 packages, 5.5 MB")
        for done in range(0, 5_500_001, 100_000):
            display.bytes("9 packages", done, 5_500_000)
        display("built python 2.7.18: 24.78 MiB, 1337 files, 2.1 s")


def test_not_a_terminal_one_line_per_phase_and_no_byte_lines():
    out = io.StringIO()
    _run(Display(stream=out, live=False))
    assert out.getvalue().splitlines() == [
        "envbox: building python 2.7.18",
        "envbox: deb: downloading 9 packages, 5.5 MB",
        "envbox: built python 2.7.18: 24.78 MiB, 1337 files, 2.1 s",
    ]


def test_notes_nobody_can_act_on_only_with_verbose():
    out = io.StringIO()
    _run(Display(stream=out, live=False, verbose=True))
    assert "envbox: deb: libc6 Breaks locales (<< 2.36)" in out.getvalue().splitlines()


def test_on_a_terminal_downloads_update_one_line():
    pytest.importorskip("rich")
    out = io.StringIO()
    _run(Display(stream=out, live=True))
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    # 56 byte reports, but the phases are the only lines that stay (the live part is redrawn
    # in place and gone at the end).
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.startswith("envbox: ")]
    assert kept == ["envbox: building python 2.7.18", "envbox: deb: downloading 9 packages, 5.5 MB",
                    "envbox: built python 2.7.18: 24.78 MiB, 1337 files, 2.1 s"], kept
    assert text.count("\n") < 10, text
    assert "Breaks" not in text
