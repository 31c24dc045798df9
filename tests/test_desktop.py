"""Desktop entries, pure parts: Exec quoting both ways, files kept as written, envbox's entries
checked by the real desktop-file-validate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import need
from envbox.desktop.entries import (
    HASH_KEY,
    MAIN_GROUP,
    PROFILE_KEY,
    SOURCE_KEY,
    readable_name,
    DesktopError,
    FieldCode,
    escape_string,
    generate,
    parse_desktop,
    parse_exec,
    quote_exec,
    read_mark,
    render_desktop,
    unescape_string,
    wrap,
)
from envbox.core.profile import Desktop

LAUNCHER = "/usr/local/bin/envbox"
HOSTILE = [
    "plain", "two words", 'dou"ble', "it's", "back\\slash", "\\", "\\\\", "$HOME", "${x}", "`id`",
    "100%", "%U", "%%", "%", "semi;colon", "a=b", "=", "-rf", "--profile=evil", "@@", "@@u", "",
    " lead", "trail ", "tab\there", "new\nline", "cr\rhere", "<>|&*?#()~", "é ünïcode 雪",
    "\\$", '\\"', "\\n", "\\s", "%f \"%u\" '%F'",
]


@pytest.mark.parametrize("arg", HOSTILE)
def test_quote_then_parse_gives_the_argument_back(arg):
    for argv in (["/usr/bin/prog", arg], ["/opt/my apps/prog", arg, "-x"], ["prog", arg, arg]):
        value = quote_exec(argv)
        assert "\n" not in value and "\r" not in value
        back = parse_exec(value)
        assert back == argv
        assert not any(isinstance(a, FieldCode) for a in back), "a literal argument must never become a field code"


def test_all_hostile_arguments_at_once_round_trip():
    argv = [LAUNCHER, "run", "--profile", "x", "--", *HOSTILE]
    assert parse_exec(quote_exec(argv)) == argv


@pytest.mark.parametrize(
    "argv,written",
    [
        (["prog", "a b"], 'prog "a b"'),
        (["prog", "a\\b"], 'prog "a\\\\\\\\b"'),  # the spec: four backslashes in the file
        (["prog", 'a"b'], 'prog "a\\\\"b"'),
        (["prog", "$HOME"], 'prog "\\\\$HOME"'),  # the spec: \\$ in the file
        (["prog", "`x`"], 'prog "\\\\`x\\\\`"'),
        (["prog", "100%"], "prog 100%%"),
        (["prog", "%U"], "prog %%U"),
        (["prog", FieldCode("%U")], "prog %U"),
        (["prog", "it's"], "prog \"it's\""),
        (["prog", "new\nline"], 'prog "new\\nline"'),
        (["prog", "a\tb"], 'prog "a\\tb"'),
        (["prog", ""], 'prog ""'),
        (["prog", "-rf", "a=b", "@@"], "prog -rf a=b @@"),
        (["/opt/my app/envbox", "launch", "x"], '"/opt/my app/envbox" launch x'),
    ],
)
def test_quote_exec_writes_what_the_spec_says(argv, written):
    assert quote_exec(argv) == written


@pytest.mark.parametrize(
    "value,argv,codes",
    [
        ("/usr/bin/google-chrome-stable %U", ["/usr/bin/google-chrome-stable", "%U"], [False, True]),
        ("vim %F", ["vim", "%F"], [False, True]),
        ("env BAMF_DESKTOP_FILE_HINT=%k foo", ["env", "BAMF_DESKTOP_FILE_HINT=%k", "foo"], [False, True, False]),
        ('foo "100%%" %%u', ["foo", "100%", "%u"], [False, False, False]),
        ("foo --name=%c 50%%%f", ["foo", "--name=%c", "50%%%f"], [False, True, True]),
        ('sh -c "echo \\\\"hi\\\\"" x %F', ["sh", "-c", 'echo "hi"', "x", "%F"], [False] * 4 + [True]),
        ('sh -c "echo \\"hi\\""', ["sh", "-c", 'echo "hi"'], [False] * 3),  # one backslash: seen in the wild
        ("'/opt/My App/app' --flag", ["/opt/My App/app", "--flag"], [False, False]),
        ("a\\sb  c\\t d", ["a", "b", "c", "d"], [False] * 4),
        ('"/opt/a b/c" "" x', ["/opt/a b/c", "", "x"], [False] * 3),
    ],
)
def test_parse_exec_reads_files_in_the_wild(value, argv, codes):
    got = parse_exec(value)
    assert got == argv
    assert [isinstance(a, FieldCode) for a in got] == codes
    assert parse_exec(quote_exec(got)) == got  # and writes them back the same way


@pytest.mark.parametrize("value", ['foo "unclosed', "foo 'unclosed", "foo %", "foo % bar", "foo \\"])
def test_parse_exec_refuses_broken_lines(value):
    with pytest.raises(ValueError):
        parse_exec(value)


@pytest.mark.parametrize(
    "argv",
    [[], [""], ["/opt/a=b/envbox", "x"], [FieldCode("%U")], ["prog", "bell\x07"], ["prog", "nul\x00"], ["prog", "esc\x1b[31m"]],
)
def test_quote_exec_refuses(argv):
    with pytest.raises(ValueError):
        quote_exec(argv)


@pytest.mark.parametrize("text", ["x", " a ", "a\nb", "back\\slash", "tab\tand\rcr", "   ", "\\s", "é"])
def test_string_escapes_round_trip(text):
    written = escape_string(text)
    assert "\n" not in written and "\r" not in written and not written.startswith(" ") and not written.endswith(" ")
    assert unescape_string(written) == text


ORIGINAL = """\
# Chrome's own entry; this comment must survive.

[Desktop Entry]
Version=1.0
Name=Google Chrome
Name[de]=Google Chrome
# A comment inside the group.
GenericName=Web Browser
GenericName[fr] = Navigateur Web
Comment=Access the Internet
Exec=/usr/bin/google-chrome-stable %U
StartupNotify=true
Terminal=false
Icon=google-chrome
Type=Application
Categories=Network;WebBrowser;
MimeType=text/html;x-scheme-handler/http;x-scheme-handler/https;
Actions=new-window;new-private-window;
TryExec=/usr/bin/google-chrome-stable
DBusActivatable=true
X-Vendor-Thing=keep me

[Desktop Action new-window]
Name=New Window
Name[de]=Neues Fenster
Exec=/usr/bin/google-chrome-stable

[Desktop Action new-private-window]
Name=New Incognito Window
Exec="/usr/bin/google-chrome-stable" --incognito "--user-data-dir=/tmp/a b"

[X-Vendor Group]
Anything=goes here
"""


def test_parse_and_render_keep_every_byte():
    assert render_desktop(parse_desktop(ORIGINAL)) == ORIGINAL
    doc = parse_desktop(ORIGINAL)
    assert [g.name for g in doc.groups] == [MAIN_GROUP, "Desktop Action new-window", "Desktop Action new-private-window", "X-Vendor Group"]
    assert doc.group(MAIN_GROUP).string("GenericName[fr]") == "Navigateur Web"
    assert doc.head == ("# Chrome's own entry; this comment must survive.", "")


@pytest.mark.parametrize(
    "text,where",
    [
        ("Name=x\n[Desktop Entry]\n", "line 1"),
        ("[Desktop Entry]\nName=a\nName=b\n", "line 3"),
        ("[Desktop Entry]\n[Desktop Entry]\n", "line 2"),
        ("[Desktop Entry]\njust words\n", "line 2"),
        ("[Desktop Entry\nName=x\n", "line 1"),
        ("[Desktop Entry]\nBad Key=x\n", "line 2"),
    ],
)
def test_parse_refuses_what_is_not_a_desktop_file(text, where):
    with pytest.raises(ValueError, match=where):
        parse_desktop(text)


def _wrapped(original: str = ORIGINAL, launcher: str = LAUNCHER) -> str:
    return wrap(original, profile="chrome", launcher=launcher, source="/usr/share/applications/google-chrome.desktop", source_hash="ab" * 32)


def test_wrap_rewrites_every_exec_and_keeps_everything_else():
    out = _wrapped()
    doc = parse_desktop(out)
    prefix = [LAUNCHER, "run", "--profile", "chrome", "--"]
    main = doc.group(MAIN_GROUP)
    assert parse_exec(main.raw("Exec")) == prefix + ["/usr/bin/google-chrome-stable", "%U"]
    assert isinstance(parse_exec(main.raw("Exec"))[-1], FieldCode)
    assert parse_exec(doc.group("Desktop Action new-window").raw("Exec")) == prefix + ["/usr/bin/google-chrome-stable"]
    assert parse_exec(doc.group("Desktop Action new-private-window").raw("Exec")) == prefix + [
        "/usr/bin/google-chrome-stable", "--incognito", "--user-data-dir=/tmp/a b"]
    assert main.raw("TryExec") is None and main.raw("DBusActivatable") is None
    assert (main.string(PROFILE_KEY), main.string(SOURCE_KEY), main.string(HASH_KEY)) == (
        "chrome", "/usr/share/applications/google-chrome.desktop", "ab" * 32)
    # Every other line (comments, localized keys, unknown keys and groups) is there, in order.
    dropped = ("Exec=", "TryExec=", "DBusActivatable=", "Exec=\"")
    kept = [line for line in ORIGINAL.splitlines() if not line.startswith(dropped)]
    lines = iter(out.splitlines())
    assert all(any(line == other for other in lines) for line in kept)


def test_wrap_marks_and_refuses_to_wrap_twice():
    out = _wrapped()
    assert read_mark(out).profile == "chrome" and read_mark(ORIGINAL) is None
    with pytest.raises(DesktopError, match="already an envbox entry"):
        _wrapped(out)


@pytest.mark.parametrize(
    "original,message",
    [
        ("[Desktop Entry]\nType=Link\nName=x\nURL=http://example.org\n", "not an application"),
        ("[Desktop Entry]\nType=Application\nName=x\nDBusActivatable=true\n", "has no Exec"),
        ("[Desktop Entry]\nType=Application\nName=x\nExec=foo \"bar\n", "cannot read the Exec"),
        ("Name=x\n", "not a valid desktop entry"),
    ],
)
def test_wrap_refuses(original, message):
    with pytest.raises(DesktopError, match=message):
        _wrapped(original)


def test_wrap_refuses_a_launcher_the_exec_key_cannot_hold():
    with pytest.raises(DesktopError, match="contains '='"):
        _wrapped(launcher="/opt/a=b/envbox")


@pytest.mark.parametrize(
    "desktop,name",
    [
        (None, "plain"),
        (Desktop(), "empty"),
        (Desktop(name="Google Chrome (Python 2.7)", icon="google-chrome", comment="Chrome; with Python 2.7",
                 generic_name="Web Browser", categories=("Network", "WebBrowser"),
                 mime_types=("text/html", "x-scheme-handler/https"), terminal=False), "full"),
        (Desktop(name="Evil\nExec=/bin/rm -rf ~\n[Desktop Action x]", comment=" spaced \\ out "), "evil"),
        (Desktop(name="Term", terminal=True, categories=("Development",)), "term"),
    ],
)
@pytest.mark.parametrize("launcher", [LAUNCHER, "/opt/my envbox/bin/envbox", "/opt/$weird`dir\\\"/envbox"])
def test_generated_entries_are_valid(tmp_path, desktop, name, launcher):
    text = generate(name, desktop, launcher=launcher)
    doc = parse_desktop(text)
    assert len(doc.groups) == 1
    main = doc.group(MAIN_GROUP)
    assert sum(1 for line in text.splitlines() if line.startswith("Exec")) == 1
    expected = [launcher, "launch", name] + (["--", "%U"] if desktop and desktop.mime_types else [])
    assert parse_exec(main.raw("Exec")) == expected
    assert main.string("Name") == ((desktop and desktop.name) or readable_name(name))  # "plain" -> "Plain"
    assert main.string(PROFILE_KEY) == name and read_mark(text).source is None
    _validate(tmp_path / f"envbox-{name}.desktop", text)


@pytest.mark.parametrize("launcher", [LAUNCHER, "/opt/my envbox/bin/envbox", "/opt/$weird`dir\\\"/envbox"])
def test_wrapped_entries_are_valid(tmp_path, launcher):
    _validate(tmp_path / "google-chrome.desktop", _wrapped(launcher=launcher))


# Real entries as Debian ships them (copied from python3.11 and vim), kept with the tests: a test
# must not depend on which desktop entries the machine happens to have.
SAMPLES = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("path", sorted((SAMPLES / "desktop").glob("*.desktop")), ids=lambda p: p.name)
def test_real_entries_wrap_into_valid_entries(tmp_path, path):
    text = path.read_text()
    out = wrap(text, profile="host", launcher=LAUNCHER, source=str(path), source_hash="0" * 64)
    _validate(tmp_path / path.name, out)
    main = parse_desktop(out).group(MAIN_GROUP)
    assert parse_exec(main.raw("Exec"))[5:] == parse_exec(parse_desktop(text).group(MAIN_GROUP).raw("Exec"))


def test_an_entry_without_exec_is_refused_with_the_reason():
    """Debian's qemu.desktop has no Exec (it only groups the emulators): nothing to wrap."""
    path = SAMPLES / "desktop-noexec-qemu.desktop"
    with pytest.raises(DesktopError, match="has no Exec key"):
        wrap(path.read_text(), profile="host", launcher=LAUNCHER, source=str(path), source_hash="0" * 64)


@pytest.mark.parametrize(
    "desktop,launcher,message",
    [
        (Desktop(name="bell\x07"), LAUNCHER, "control character"),
        (Desktop(categories=("Net\x1bwork",)), LAUNCHER, "control character"),
        (None, "/opt/a=b/envbox", "contains '='"),
    ],
)
def test_generate_refuses(desktop, launcher, message):
    with pytest.raises(DesktopError, match=message):
        generate("x", desktop, launcher=launcher)


@pytest.mark.parametrize("name", ["-rf", "../x", "A", "a b", ""])
def test_bad_profile_names_never_reach_an_entry(name):
    with pytest.raises(DesktopError, match="bad profile name"):
        generate(name, None, launcher=LAUNCHER)
    with pytest.raises(DesktopError, match="bad profile name"):
        wrap(ORIGINAL, profile=name, launcher=LAUNCHER, source="/x.desktop", source_hash="0" * 64)


def _validate(path: Path, text: str) -> None:
    need(shutil.which("desktop-file-validate") is not None, "desktop-file-validate is missing (apt-get install desktop-file-utils)")
    path.write_text(text)
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout + result.stderr + text


@pytest.mark.parametrize("profile,label", [("py-host", "Py Host"), ("node", "Node"), ("my_tool.2", "My Tool 2")])
def test_an_entry_without_a_desktop_section_has_a_readable_name_and_says_where_it_came_from(profile, label):
    text = generate(profile, None, launcher=LAUNCHER, description="The host's Python 3.11")
    main = parse_desktop(text).group(MAIN_GROUP)
    assert main.string("Name") == label
    assert main.string("Comment") == "The host's Python 3.11"
    assert "desktop: section." not in text.splitlines()[0] and "name and description" in text.splitlines()[0]
