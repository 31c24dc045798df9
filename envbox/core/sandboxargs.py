"""Render the sandbox's argv and the app's environment from plain values. Pure, stdlib only.

The one place sandbox options are assembled: Plan.sandbox_args (full CLI) and the fast launch
path (cached plan) both call render(), so the two paths cannot drift apart. Kept free of
dataclasses, pathlib and re, which the fast path cannot afford to import.
"""

# The caller's variables an app gets (everything else is dropped, so a launch does not leak
# the caller's PYTHONPATH, LD_PRELOAD or tool-manager shims into the app). README "Environment".
PASSTHROUGH = frozenset((
    "HOME", "USER", "LOGNAME", "SHELL", "TERM", "COLORTERM", "TERM_PROGRAM", "LANG", "LANGUAGE", "TZ",
    "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_RUNTIME_DIR", "XDG_SESSION_TYPE",
    "XDG_CURRENT_DESKTOP", "XDG_SESSION_DESKTOP", "XDG_DATA_DIRS", "XDG_CONFIG_DIRS",
    "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
    "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "PULSE_SERVER",
    "TMPDIR", "COLUMNS", "LINES", "NO_COLOR", "EDITOR", "VISUAL", "PAGER",
    # Proxies and the certificates a TLS-inspecting proxy needs, under every name common tools read.
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "all_proxy", "ALL_PROXY", "ftp_proxy", "FTP_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "PIP_CERT", "GIT_SSL_CAINFO",
))
PASSTHROUGH_PREFIXES = ("LC_",)
# The standard directories of a Debian PATH: always first, so a layer's /usr/bin/python wins
# over a pyenv or asdf shim the caller has earlier in their own PATH.
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def app_env(environ, fixed, defaults=(), path_tail=False) -> dict:
    """The app's environment, later entries winning: the releases' defaults (e.g. where the
    host's CA bundle is), the allowed caller variables, the plan's fixed ones (profile env,
    PATH). path_tail: append the caller's own PATH entries after the plan's PATH."""
    env = dict(defaults)
    env.update((k, v) for k, v in environ.items() if k in PASSTHROUGH or k.startswith(PASSTHROUGH_PREFIXES))
    env.update(fixed)
    if path_tail and "PATH" in env:
        env["PATH"] = join_path(env["PATH"], environ.get("PATH", ""))
    return env


def join_path(head, tail) -> str:
    """head's entries, then tail's absolute entries not already there (relative ones such as
    "" or "." would make the app's commands depend on its working directory). Pure."""
    out = []
    for entry in head.split(":") + tail.split(":"):
        entry = entry.rstrip("/") or entry
        if entry.startswith("/") and entry not in out:
            out.append(entry)
    return ":".join(out)


# The seccomp filter every sandbox installs (sandbox.py install_tty_filter); `envbox plan` names it.
TTY_FILTER_OPTION = "--block-tty-inject"
TTY_FILTER = "ioctl TIOCSTI and TIOCLINUX fail with EPERM (no typing into the caller's terminal)"


def render(*, userns, overlays, env, cwd, argv, extra=(), cgroup_files=(), readonly=(), own_pgrp=False, debug=False, close_fds=(), confine=None) -> list:
    """overlays: [(target, [lower dirs top first])]; env: the app's whole environment;
    readonly: envbox's own directories, which the app must not be able to change;
    close_fds: standard fds the app gets closed (envbox was started without them).
    confine: for a layer's own programs run while building it: {"writable": [(src, dest)],
    "hide": [paths under a fresh tmpfs], "drop_to": (uid, gid) or None}: no network, every
    mount read-only except the writable binds, no terminal, not root."""
    args = ["--debug"] if debug else []
    if userns:
        args.append("--userns")
    args.append("--unshare-pid")
    if confine is not None:
        args += ["--unshare-net", "--ro-all", "--new-session"]
        for path in confine.get("hide", ()):
            args += ["--tmpfs", path]
        for src, dest in confine.get("writable", ()):
            args += ["--bind", src, dest]
        if confine.get("drop_to"):
            args += ["--drop-to", *(str(n) for n in confine["drop_to"])]
    args.append(TTY_FILTER_OPTION)
    if own_pgrp:
        args.append("--own-pgrp")
    for procs in cgroup_files:
        args += ["--join-cgroup", procs]
    for target, lowers in overlays:
        for lower in lowers:
            args += ["--lower", lower]
        args += ["--overlay", target]
    for path in readonly:
        args += ["--ro-bind", path]
    for fd in close_fds:
        args += ["--close-fd", str(fd)]
    for name in sorted(env):
        args += ["--setenv", name, env[name]]
    args += ["--chdir", cwd, "--die-with-parent", "--", *argv, *extra]
    return args
