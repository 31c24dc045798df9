"""Sandbox option parsing and mountinfo reading: pure parts, real inputs."""

import pytest

from envbox.runtime import sandbox

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:33 / /usr/local rw - tmpfs tmpfs rw
41 40 0:34 / /usr/local/share rw - tmpfs tmpfs rw
42 27 254:0 /x /etc/hosts rw - ext4 /dev/vda rw
43 27 254:0 /y /etc/with\\040space rw - ext4 /dev/vda rw
44 27 254:0 /z /usrx rw - ext4 /dev/vda rw
"""


def test_submounts_are_the_outermost_below_the_target(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert sandbox.submounts("/usr", str(info)) == ["/usr/local"]
    assert sandbox.submounts("/etc", str(info)) == ["/etc/hosts", "/etc/with space"]
    assert sandbox.submounts("/opt", str(info)) == []


@pytest.mark.parametrize(
    "argv,error",
    [
        (["--lower", "/a"], "--lower without a following --overlay"),
        (["--overlay"], "needs 1 value"),
        (["--bogus", "--", "x"], "unknown sandbox option"),
        (["--userns"], "no command given"),
        (["--wait-fd", "x", "--", "true"], "file descriptor number"),
    ],
)
def test_bad_sandbox_options(argv, error):
    with pytest.raises(sandbox.SandboxFailure) as info:
        sandbox.parse(argv)
    assert error in str(info.value)


def test_parse_orders_operations():
    ctx = sandbox.parse(["--userns", "--unshare-pid", "--join-cgroup", "/c/cgroup.procs", "--lower", "/l1", "--lower", "/l2",
                         "--overlay", "/usr", "--ro-bind", "/home/u/.config/envbox", "--setenv", "A", "1", "--", "app", "-x"])
    assert [type(op).__name__ for op in ctx.ops] == ["Unshare", "Overlay", "ReadOnly"]
    assert [type(op).__name__ for op in ctx.init_ops] == ["JoinCgroup", "MountProc"]
    assert ctx.ops[1].lowers == ("/l1", "/l2") and ctx.env == {"A": "1"} and ctx.argv == ["app", "-x"]


def test_mounts_below_lists_every_mount_point_outermost_first(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert sandbox.mounts_below("/usr", str(info)) == ["/usr/local", "/usr/local/share"]
    assert sandbox.mounts_below("/usrx", str(info)) == []
    everything = sandbox.mounts_below("/", str(info))
    assert everything.index("/usr/local") < everything.index("/usr/local/share") and "/usrx" in everything


def test_confinement_orders_its_mounts():
    """Binds are taken before everything turns read-only and put back after the tmpfs mounts."""
    ctx = sandbox.parse(["--unshare-pid", "--unshare-net", "--ro-all", "--new-session", "--tmpfs", "/tmp", "--bind", "/l", "/tmp/layer",
                         "--drop-to", "65534", "65534", "--block-tty-inject", "--lower", "/l/usr", "--overlay", "/usr", "--", "app"])
    assert [type(op).__name__ for op in ctx.ops] == ["Unshare", "Overlay", "BindTake", "ReadOnlyAll", "Tmpfs", "BindPut"]
    assert ctx.ops[0].netns and ctx.new_session and ctx.block_tty_inject and ctx.drop_to == (65534, 65534)


@pytest.mark.parametrize(
    "argv,error",
    [
        (["--drop-to", "nobody", "x", "--", "true"], "numeric uid and gid"),
        (["--bind", "/a"], "needs 2 value"),
        (["--tmpfs"], "needs 1 value"),
    ],
)
def test_bad_confinement_options(argv, error):
    with pytest.raises(sandbox.SandboxFailure) as info:
        sandbox.parse(argv)
    assert error in str(info.value)


def test_render_adds_the_filter_always_and_the_confinement_on_request():
    from envbox.core import sandboxargs

    plain = sandboxargs.render(userns=False, overlays=[], env={}, cwd="/", argv=["x"])
    assert "--block-tty-inject" in plain and "--ro-all" not in plain
    confined = sandboxargs.render(userns=False, overlays=[], env={}, cwd="/", argv=["x"],
                                  confine={"hide": ["/tmp"], "writable": [("/l", "/tmp/l")], "drop_to": (65534, 65534)})
    for option in ("--unshare-net", "--ro-all", "--new-session", "--block-tty-inject"):
        assert option in confined
    assert confined[confined.index("--bind") + 1 : confined.index("--bind") + 3] == ["/l", "/tmp/l"]
    assert confined[confined.index("--drop-to") + 1 : confined.index("--drop-to") + 3] == ["65534", "65534"]


@pytest.mark.parametrize(
    "err,values,expect",
    [
        (1, {"kernel.unprivileged_userns_clone": "0"}, "kernel.unprivileged_userns_clone = 0"),
        (28, {"kernel.unprivileged_userns_clone": "1", "user.max_user_namespaces": "0"}, "user.max_user_namespaces = 0"),
        (1, {"kernel.apparmor_restrict_unprivileged_userns": "1"}, "apparmor_restrict_unprivileged_userns = 1"),
        (28, {"user.max_user_namespaces": "15000"}, "per-user limit"),
        (1, {"kernel.unprivileged_userns_clone": "1", "user.max_user_namespaces": "15000"}, None),  # some other EPERM
        (22, {"kernel.unprivileged_userns_clone": "0"}, None),  # EINVAL: not this cause
    ],
)
def test_switched_off_user_namespaces_are_named_with_the_knob(err, values, expect):
    """tests/vm defect D4: with user namespaces switched off, a rootless launch said only
    'unshare: Operation not permitted'; it must say why and how to enable them."""
    from envbox.runtime.sandbox import userns_off_reason

    got = userns_off_reason(err, values.get)
    if expect is None:
        assert got is None
    else:
        first, hint = got.split("\n")
        assert expect in first and first.startswith("cannot create a user namespace")
        assert hint.startswith("hint: ") and "sysctl" in hint
