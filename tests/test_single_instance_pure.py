"""single_instance: the profile field's strict validation and the pure parts of the check."""

from __future__ import annotations

import pytest

from envbox.core.errors import ProfileError
from envbox.core.profile import SingleInstance, load_profile
from envbox.runtime import singleton


def load(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text("command: [app]\n" + text)
    return load_profile(path, "user")


@pytest.mark.parametrize("text, expected", [
    ("single_instance: {lock: ~/.config/app/SingletonLock}\n", SingleInstance(lock="~/.config/app/SingletonLock")),
    ("single_instance: {socket: /run/app.sock, separate_with: --user-data-dir}\n", SingleInstance(socket="/run/app.sock", separate_with="--user-data-dir")),
    ("single_instance: {lock: $XDG_CONFIG_HOME/app/lock, dbus: org.mozilla.firefox}\n", SingleInstance(lock="$XDG_CONFIG_HOME/app/lock", dbus="org.mozilla.firefox")),
])
def test_good_single_instance(tmp_path, text, expected):
    assert load(tmp_path, text).single_instance == expected


@pytest.mark.parametrize("text, message", [
    ("single_instance: yes\n", "single_instance must be a mapping"),
    ("single_instance: {}\n", "needs at least one of: lock, socket, dbus"),
    ("single_instance: {lok: /x}\n", "unknown key 'lok' in single_instance"),
    ("single_instance: {lock: relative/lock}\n", "single_instance.lock must be a path starting with /"),
    ("single_instance: {lock: ~/../etc/lock}\n", "single_instance.lock must be a path"),
    ("single_instance: {socket: '~/'}\n", "single_instance.socket must be a path"),
    ("single_instance: {lock: [/x]}\n", "single_instance.lock must be a string"),
    ("single_instance: {dbus: firefox}\n", "single_instance.dbus must be a well-known D-Bus name"),
    ("single_instance: {dbus: org.1bad}\n", "single_instance.dbus must be a well-known D-Bus name"),
    ("single_instance: {lock: /x, separate_with: user-data-dir}\n", "separate_with must be an option"),
    ("single_instance: {lock: /x, separate_with: --dir=x}\n", "separate_with must be an option"),
])
def test_bad_single_instance_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ProfileError) as exc:
        load(tmp_path, text)
    assert message in exc.value.message, exc.value.message
    assert ":2:" in exc.value.message  # file:line


def test_bundled_chrome_declares_its_singleton():
    from pathlib import Path

    chrome = load_profile(Path(__file__).resolve().parent.parent / "profiles" / "chrome.yaml", "bundled")
    assert chrome.single_instance.lock == "$XDG_CONFIG_HOME/google-chrome/SingletonLock"
    assert chrome.single_instance.separate_with == "--user-data-dir"


@pytest.mark.parametrize("target, expected", [
    ("myhost-12345", ("myhost", 12345)),
    ("host-1-2-77", ("host-1-2", 77)),
    ("127.0.1.1:+4242", ("127.0.1.1", 4242)),
    ("31337", ("", 31337)),
    ("myhost-", None),
    ("myhost-0", None),
    ("", None),
])
def test_parse_lock(target, expected):
    assert singleton.parse_lock(target) == expected


@pytest.mark.parametrize("option, args, expected", [
    ("--user-data-dir", ["--user-data-dir=/tmp/x"], True),
    ("--user-data-dir", ["--user-data-dir", "/tmp/x"], True),
    ("--user-data-dir", ["--user-data-directory=/x", "https://a"], False),
    (None, ["--user-data-dir=/x"], False),
])
def test_separated(option, args, expected):
    assert singleton.separated(option, args) is expected


@pytest.mark.parametrize("path, environ, expected", [
    ("~/.config/a/L", {"HOME": "/h"}, "/h/.config/a/L"),
    ("$XDG_CONFIG_HOME/a/L", {"HOME": "/h"}, "/h/.config/a/L"),
    ("$XDG_CONFIG_HOME/a/L", {"HOME": "/h", "XDG_CONFIG_HOME": "/c"}, "/c/a/L"),
    ("/abs/L", {"HOME": "/h"}, "/abs/L"),
])
def test_expand(path, environ, expected):
    assert singleton.expand(path, environ) == expected
