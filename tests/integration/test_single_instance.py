"""A single-instance app already running outside the profile's environment: launch refuses
(125, one line and a hint), --force launches with a warning, a separate directory or an
instance that is one of envbox's own launches of the profile is fine. The fake instance holds
what Chrome holds: a SingletonLock symlink "HOST-PID" and a listening SingletonSocket."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import no_traceback

FAKE = r'''
import os, socket, sys, tempfile, time
data = sys.argv[1]
os.makedirs(data, exist_ok=True)
sockdir = tempfile.mkdtemp(prefix=".fake-singleton-")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(os.path.join(sockdir, "SingletonSocket"))
s.listen(1)
os.symlink(os.path.join(sockdir, "SingletonSocket"), os.path.join(data, "SingletonSocket"))
os.symlink(f"{socket.gethostname()}-{os.getpid()}", os.path.join(data, "SingletonLock"))
print("ready", flush=True)
while True:  # like Chrome: take each second start's connection (and ignore it here)
    s.accept()[0].close()
'''


@pytest.fixture
def sienv(env):
    data = env.home / ".config" / "fakeapp"
    fake = env.base / "fake_instance.py"
    fake.write_text(FAKE)
    # The app's command: serve (be the instance, from inside the launch), or just say it ran.
    env.write_profile("fakeapp", f"""command: [sh, -c, 'if [ "$1" = serve ]; then exec /usr/bin/python3 {fake} {data}; fi; echo launched "$@"', fakeapp]
single_instance:
  lock: $XDG_CONFIG_HOME/fakeapp/SingletonLock
  socket: $XDG_CONFIG_HOME/fakeapp/SingletonSocket
  separate_with: --user-data-dir
""")
    env.data = data
    env.fake = fake
    return env


def outside_instance(env):
    proc = env.popen(["/usr/bin/python3", str(env.fake), str(env.data)], stdout=-1, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_outside_instance_refuses_the_launch(sienv):
    other = outside_instance(sienv)
    result = sienv.envbox("launch", "fakeapp")
    assert result.returncode == 125, result
    no_traceback(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("envbox: fakeapp is already running outside envbox's fakeapp environment")
    assert f"pid {other.pid}" in lines[0]
    assert lines[1].startswith("hint: close the other fakeapp first") and "--user-data-dir=DIR" in lines[1] and "--force" in lines[1]
    assert "launched" not in result.stdout
    # The fast path (a cached plan) checks too.
    cached = sienv.envbox("launch", "fakeapp", env={"ENVBOX_TRACE": "1"})
    assert cached.returncode == 125 and "fast path (cached plan)" in cached.stderr, cached.stderr
    forced = sienv.envbox("launch", "--force", "fakeapp")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == "launched"
    assert forced.stderr.startswith("envbox: warning: fakeapp is already running outside")
    separate = sienv.envbox("launch", "fakeapp", "--", "--user-data-dir=/tmp/elsewhere")
    assert separate.returncode == 0 and separate.stdout.strip() == "launched --user-data-dir=/tmp/elsewhere", separate.stderr
    other.kill()
    other.wait()
    stale = sienv.envbox("launch", "fakeapp")  # the lock and socket stay behind, nobody answers
    assert stale.returncode == 0 and stale.stdout.strip() == "launched", stale.stderr


def test_instance_inside_a_launch_of_the_profile_is_fine(sienv):
    inside = sienv.envbox_popen("launch", "fakeapp", "--", "serve", stdout=-1, text=True)
    assert inside.stdout.readline().strip() == "ready"
    target = (sienv.data / "SingletonLock").readlink()
    assert target.name.endswith("-2") or int(str(target).rsplit("-", 1)[1]) < 10, target  # its pid inside the namespace
    result = sienv.envbox("launch", "fakeapp")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "launched"
    inside.kill()
    inside.wait()


def test_pid_reused_after_the_lock_was_written_is_not_an_instance(sienv):
    sienv.data.mkdir(parents=True)
    later = sienv.popen(["sleep", "60"])
    lock = sienv.data / "SingletonLock"
    import os
    import socket as so

    os.symlink(f"{so.gethostname()}-{later.pid}", lock)
    os.utime(lock, (time.time() - 3600, time.time() - 3600), follow_symlinks=False)  # written an hour ago
    sienv.give(sienv.data)
    result = sienv.envbox("launch", "fakeapp")
    assert result.returncode == 0, result.stderr
    later.kill()
    later.wait()


def test_plan_shows_single_instance(sienv):
    data = json.loads(sienv.envbox("plan", "fakeapp", "--json").stdout)
    assert data["single_instance"]["lock"] == "$XDG_CONFIG_HOME/fakeapp/SingletonLock"


DBUS_APP = r'''
import sys, time
import dbus  # Debian's python3-dbus
bus = dbus.SessionBus()
assert bus.request_name(sys.argv[1], dbus.bus.NAME_FLAG_DO_NOT_QUEUE) == dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER
print("ready", flush=True)
time.sleep(120)
'''


@pytest.fixture
def session_bus(env):
    """A private session bus of the env's user (dbus-daemon), and a fake app that owns a name."""
    import shutil

    from conftest import need

    need(shutil.which("dbus-daemon") is not None and shutil.which("dbus-send") is not None, "dbus-daemon and dbus-send (tests/run installs them)")
    need(subprocess.run(["/usr/bin/python3", "-c", "import dbus"], capture_output=True).returncode == 0, "python3-dbus (tests/run installs it)")
    daemon = env.popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE, text=True)
    env.vars["DBUS_SESSION_BUS_ADDRESS"] = daemon.stdout.readline().strip()
    app = env.base / "dbus_app.py"
    app.write_text(DBUS_APP)
    env.write_profile("busapp", f"command: [/usr/bin/python3, {app}, org.envboxtest.BusApp]\n"
                      "single_instance: {dbus: org.envboxtest.BusApp}\n")
    env.write_profile("busapp-check", "command: [sh, -c, 'echo launched']\nsingle_instance: {dbus: org.envboxtest.BusApp}\n")
    env.dbus_app = app
    return env


def test_dbus_name_owned_outside_refuses(session_bus):
    env = session_bus
    outside = env.popen(["/usr/bin/python3", str(env.dbus_app), "org.envboxtest.BusApp"], stdout=subprocess.PIPE, text=True)
    assert outside.stdout.readline().strip() == "ready"
    result = env.envbox("launch", "busapp-check")
    assert result.returncode == 125, result
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and f"pid {outside.pid}, D-Bus name org.envboxtest.BusApp" in lines[0], lines
    outside.kill()
    outside.wait()
    assert env.envbox("launch", "busapp-check").stdout.strip() == "launched"


def test_dbus_name_owned_by_a_launch_of_the_profile_is_fine(session_bus):
    env = session_bus
    inside = env.envbox_popen("launch", "busapp", stdout=subprocess.PIPE, text=True)
    assert inside.stdout.readline().strip() == "ready"
    # busapp's own second launch: the owner is a process of a busapp launch.
    again = env.envbox("launch", "busapp")
    assert "already running" not in again.stderr, again.stderr
    # busapp-check is another profile: the same owner is outside *its* environment.
    other = env.envbox("launch", "busapp-check")
    assert other.returncode == 125 and "D-Bus name org.envboxtest.BusApp" in other.stderr
    inside.kill()
    inside.wait()


def _monitor(env, address: str):
    """dbus-monitor on the env's private bus, watching for desktop notifications."""
    mon = env.popen(["dbus-monitor", "--address", address, "interface='org.freedesktop.Notifications'"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # dbus-monitor says NameAcquired once it listens
        if "NameAcquired" in (mon.stdout.readline() or ""):
            return mon
    raise AssertionError("dbus-monitor did not start")


def _notifications(mon) -> str:
    time.sleep(0.5)
    mon.terminate()
    return mon.communicate(timeout=20)[0]


def test_refusal_from_a_desktop_menu_is_posted_as_a_notification(sienv):
    """Started from a menu entry (GLib sets GIO_LAUNCHED_DESKTOP_FILE; stderr is a log nobody
    reads), the refusal also reaches the desktop: a Notify call on the session bus with the
    error and its hint. From a terminal or a script, nothing is posted."""
    import shutil

    from conftest import need

    need(shutil.which("dbus-daemon") and shutil.which("dbus-monitor") and (shutil.which("gdbus") or shutil.which("notify-send")),
         "dbus-daemon, dbus-monitor and gdbus (tests/run installs them)")
    daemon = sienv.popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE, text=True)
    address = daemon.stdout.readline().strip()
    other = outside_instance(sienv)
    try:
        mon = _monitor(sienv, address)
        menu = {"DBUS_SESSION_BUS_ADDRESS": address, "GIO_LAUNCHED_DESKTOP_FILE": "/usr/share/applications/envbox-fakeapp.desktop"}
        result = sienv.envbox("launch", "fakeapp", env=menu)
        assert result.returncode == 125, result
        seen = _notifications(mon)
        assert "member=Notify" in seen, seen
        assert f'string "envbox: fakeapp is already running outside envbox\'s fakeapp environment (pid {other.pid}' in seen, seen
        assert 'string "close the other fakeapp first' in seen, seen
        # The same refusal without the desktop's variable (a terminal, a script): no notification.
        mon = _monitor(sienv, address)
        plain = sienv.envbox("launch", "fakeapp", env={"DBUS_SESSION_BUS_ADDRESS": address})
        assert plain.returncode == 125
        assert "member=Notify" not in _notifications(mon)
    finally:
        other.kill()
        other.wait()
