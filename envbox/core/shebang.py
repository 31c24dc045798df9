"""Which program runs a script: the interpreter its `#!` line names, for `envbox which` to say
that a host script is run by a pinned interpreter inside the app. Pure: bytes in, paths out."""

from __future__ import annotations

import os

from envbox.core.sandboxargs import STANDARD_PATH


def interpreter_candidates(head: bytes, search: str = STANDARD_PATH) -> list[str]:
    """The absolute paths that may run a script starting with head, in the order the kernel and
    env(1) try them: `#!/usr/bin/python3` -> [/usr/bin/python3]; `#!/usr/bin/env python3` ->
    python3 in each dir of search (the app's standard PATH); [] for no shebang or one envbox
    cannot follow (env with options, a relative interpreter)."""
    if not head.startswith(b"#!"):
        return []
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    interpreter, _, arg = line.partition(" ")
    arg = arg.strip()
    if not interpreter.startswith("/"):
        return []
    if os.path.basename(interpreter) != "env":
        return [os.path.normpath(interpreter)]
    if arg.startswith("/") and " " not in arg:
        return [os.path.normpath(arg)]
    if not arg or arg.startswith("-") or any(c in arg for c in "/ ="):
        return []
    return [f"{d}/{arg}" for d in search.split(":") if d.startswith("/")]
