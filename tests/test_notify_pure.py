"""Which of envbox's stderr lines make the desktop notification of a failed menu launch."""

from __future__ import annotations

import pytest

from envbox import notify


@pytest.mark.parametrize(
    "text, found",
    [
        ("envbox: app is already running outside envbox's app environment (pid 7)\nhint: close the other app first\n",
         ("app is already running outside envbox's app environment (pid 7)", "close the other app first")),
        # progress first, then the error: the error
        ("envbox: building python -> /usr/bin/python3 (host)\nenvbox: built python: 0 B, 3 files, 0.1 s\n"
         "envbox: cannot enforce the limits of app: memory: ...\nhint: run 'envbox doctor'\n",
         ("cannot enforce the limits of app: memory: ...", "run 'envbox doctor'")),
        ("envbox: python: no release matches 9.9\n", ("python: no release matches 9.9", "")),
        # warnings and notes are not the error
        ("envbox: warning: running app WITHOUT its limits\n", None),
        ("envbox: note: app reached its memory limit\n", None),
        ("the app's own output\n", None),
        ("", None),
    ],
)
def test_error_of(text, found):
    assert notify.error_of(text) == found


@pytest.mark.parametrize(
    "environ, wanted",
    [
        ({}, False),  # a terminal or a script: stderr is seen
        ({"GIO_LAUNCHED_DESKTOP_FILE": "/usr/share/applications/x.desktop"}, True),
        ({"ENVBOX_NOTIFY": "1"}, True),
        ({"GIO_LAUNCHED_DESKTOP_FILE": "/x.desktop", "ENVBOX_NOTIFY": "0"}, False),
    ],
)
def test_wanted_when_started_from_a_menu(environ, wanted, monkeypatch):
    monkeypatch.setattr(notify.os, "isatty", lambda fd: False)
    assert notify.wanted(environ) is wanted
    monkeypatch.setattr(notify.os, "isatty", lambda fd: True)  # stderr on a terminal: it is read
    assert notify.wanted(environ) is False
