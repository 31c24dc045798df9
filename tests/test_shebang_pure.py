"""How `envbox which` finds the interpreter of a script (envbox/core/shebang.py): real first
lines of Debian's scripts and the forms the kernel and env(1) accept."""

from __future__ import annotations

import pytest

from envbox.core.shebang import interpreter_candidates

ENV_PYTHON3 = [f"{d}/python3" for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")]


@pytest.mark.parametrize("head, expected", [
    (b"#!/usr/bin/python3\n# EASY-INSTALL-ENTRY-SCRIPT\n", ["/usr/bin/python3"]),  # Debian's /usr/bin/pip3
    (b"#! /usr/bin/python3 -I\n", ["/usr/bin/python3"]),
    (b"#!/usr/bin/env python3\nimport sys\n", ENV_PYTHON3),
    (b"#!/usr/bin/env  node", [p.replace("python3", "node") for p in ENV_PYTHON3]),
    (b"#!/bin/sh\nset -e\n", ["/bin/sh"]),
    (b"#!/usr/bin/../bin/perl -w\n", ["/usr/bin/perl"]),
    (b"#!/usr/bin/env -S python3 -u\n", []),  # env with options: not followed
    (b"#!/usr/bin/env PYTHONPATH=x python3\n", []),
    (b"#!/usr/bin/env /opt/py/bin/python\n", ["/opt/py/bin/python"]),
    (b"#!python3\n", []),  # relative: the kernel refuses it too
    (b"\x7fELF\x02\x01\x01", []),  # a binary
    (b"", []),
    (b"#!/usr/bin/python3\xff\xfe\n", ["/usr/bin/python3\ufffd\ufffd"]),  # not UTF-8: never a crash
])
def test_interpreter_candidates(head, expected):
    assert interpreter_candidates(head) == expected


def test_env_searches_the_path_it_is_given():
    assert interpreter_candidates(b"#!/usr/bin/env ruby\n", "/usr/bin:relative:/bin") == ["/usr/bin/ruby", "/bin/ruby"]
