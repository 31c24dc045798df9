"""Review class 8: catalog fields validated less strictly than profile fields. Every field a
catalog can set gets the same check as the profile field of the same kind (core/fields.py,
one function per kind), reported as file:line. Table-driven over real YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import no_traceback
from envbox.core.catalog import _read_file
from envbox.core.errors import CatalogError, ProfileError
from envbox.core.profile import load_profile
from envbox.sources import checks as kinds

SOURCE = "{kind: archive, url: /srv/tool.tar.gz, sha256: " + "a" * 64 + "}"


def catalog_error(tmp_path: Path, release_lines: str) -> str:
    path = tmp_path / "cat.yaml"
    path.write_text(f'tool: tool\nreleases:\n  - version: "1.0"\n    source: {SOURCE}\n{release_lines}')
    with pytest.raises(CatalogError) as info:
        _read_file(path, kinds())
    return info.value.message


def catalog_ok(tmp_path: Path, release_lines: str):
    path = tmp_path / "cat.yaml"
    path.write_text(f'tool: tool\nreleases:\n  - version: "1.0"\n    source: {SOURCE}\n{release_lines}')
    return _read_file(path, kinds())[0]


def profile_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path, "user")
    return info.value.message


# (YAML key as written, value as written, the words both must report)
BAD_ENV = [
    ('"A=B"', '"x"', "bad environment variable name 'A=B'"),
    ('""', '"x"', "bad environment variable name ''"),
    ('"1A"', '"x"', "bad environment variable name '1A'"),
    ('"A B"', '"x"', "bad environment variable name 'A B'"),
    ('"A-B"', '"x"', "bad environment variable name 'A-B'"),
    ('"\u00c4X"', '"x"', "bad environment variable name"),
    ("GOOD", "[1, 2]", "env.GOOD must be a string, not a list"),
    ("GOOD", "true", "env.GOOD must be a string, not a boolean"),
    ("GOOD", "null", "env.GOOD must be a string, not null"),
    ("GOOD", "{a: b}", "env.GOOD must be a string, not a mapping"),
]


@pytest.mark.parametrize("key,value,words", BAD_ENV)
def test_env_same_rule_in_catalog_and_profile(tmp_path, key, value, words):
    cat = catalog_error(tmp_path, f"    env:\n      {key}: {value}\n")
    prof = profile_error(tmp_path, f"command: [sh]\nenv:\n  {key}: {value}\n")
    assert cat.startswith(f"{tmp_path / 'cat.yaml'}:6: "), cat
    assert prof.startswith(f"{tmp_path / 'p.yaml'}:3: "), prof
    assert words in cat and words in prof
    assert cat.split(": ", 1)[1] == prof.split(": ", 1)[1]  # the very same message


@pytest.mark.parametrize("key,value", [("GOOD_1", '"x"'), ("_under", '""'), ("N", "3")])
def test_good_env_is_accepted_by_both(tmp_path, key, value):
    release = catalog_ok(tmp_path, f"    env:\n      {key}: {value}\n")
    assert dict(release.env)[key] == str(value).strip('"')
    path = tmp_path / "p.yaml"
    path.write_text(f"command: [sh]\nenv:\n  {key}: {value}\n")
    assert dict(load_profile(path, "user").env)[key] == str(value).strip('"')


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("    description: [a, b]\n", 5, "description must be a string, not a list"),
        ('    description: "bell\\a"\n', 5, "description has the control character"),
        ("    env: [A]\n", 5, "env must be a mapping"),
        ("    links: {usr/bin/x: ''}\n", 5, "link target of usr/bin/x must be a non-empty string"),
        ("    links: {usr/bin/x: 3}\n", 5, "link target of usr/bin/x must be a non-empty string"),
        ("    links: {bin/x: y}\n", 5, "must be a relative path under usr/, etc/ or opt/"),
        ("    links: {usr/../etc/x: y}\n", 5, "must be a relative path under usr/"),
        ("    links:\n      usr/bin/ok: y\n      /usr/bin/x: y\n", 7, "must be a relative path"),
        (f"    links: {{usr/bin/{'n' * 256}: y}}\n", 5, "256-byte component"),
        (f"    links: {{usr/bin/x: {'t/' * 2100}}}\n", 5, "more than a path can be"),
    ],
)
def test_release_fields_report_file_and_line(tmp_path, text, line, words):
    message = catalog_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'cat.yaml'}:{line}: "), message
    assert words in message, message


def test_free_text_same_rule_in_catalog_and_profile(tmp_path):
    cat = catalog_error(tmp_path, '    description: "a\\x1bb"\n')
    prof = profile_error(tmp_path, 'command: [sh]\ndescription: "a\\x1bb"\n')
    assert cat.split(": ", 1)[1] == prof.split(": ", 1)[1]


@pytest.mark.parametrize("name", ["Tool", "-x", "a/b", "", "x" * 65])
def test_tool_name_same_rule(tmp_path, name):
    path = tmp_path / "cat.yaml"
    path.write_text(f'tool: "{name}"\nreleases: []\n')
    with pytest.raises(CatalogError) as info:
        _read_file(path, kinds())
    assert info.value.message.startswith(f"{path}:1: bad tool name"), info.value.message
    prof = profile_error(tmp_path, f'command: [sh]\ntools:\n  "{name}": "1"\n')
    assert "bad tool name" in prof


@pytest.mark.parametrize(
    "url,words",
    [("/srv/../etc/shadow.tar.gz", "'..' component"), ("relative/x.tar.gz", "must be https:// or an absolute path"), ("/" + "p" * 300, "300-byte component")],
)
def test_local_urls_follow_the_path_rule(tmp_path, url, words):
    path = tmp_path / "cat.yaml"
    path.write_text(f'tool: tool\nreleases:\n  - version: "1.0"\n    source: {{kind: archive, url: "{url}", sha256: {"a" * 64}}}\n')
    with pytest.raises(CatalogError) as info:
        _read_file(path, kinds())
    assert info.value.message.startswith(f"{path}:4: "), info.value.message
    assert words in info.value.message


@pytest.mark.parametrize("field", ["tools.python.host", "desktop.from"])
def test_profile_paths_use_the_same_path_rule(tmp_path, field):
    text = "command: [sh]\ntools:\n  python: {host: /usr/../bin/python3}\n" if field.startswith("tools") else "command: [sh]\ndesktop:\n  from: /a/../b.desktop\n"
    message = profile_error(tmp_path, text)
    assert ":3: " in message and "'..' component" in message


def test_catalog_env_error_reaches_the_user_as_file_line(env):
    """End to end: the bad release env fails `plan` with the catalog's file:line, not every
    launch with the init's 'illegal environment variable name'."""
    catalog = Path(env.vars["XDG_CONFIG_HOME"]) / "envbox" / "catalog.d"
    catalog.mkdir(parents=True)
    path = catalog / "tool.yaml"
    path.write_text(f'tool: tool\nreleases:\n  - version: "1.0"\n    source: {SOURCE}\n    env:\n      "A=B": x\n')
    env.write_profile("p", 'command: [sh]\ntools:\n  tool: "1.0"\n')
    for args in (["plan", "p"], ["launch", "p"], ["catalog"]):
        result = env.envbox(*args)
        assert result.returncode == 125, result.stderr
        assert result.stderr.startswith(f"envbox: {path}:6: bad environment variable name 'A=B'"), result.stderr
        no_traceback(result)
