"""Strict YAML: plain data only, with line numbers; everything else is an error with a line."""

import pytest

from envbox.core.yamlstrict import YamlError, parse

BAD = [
    # (yaml text, line, words in the message)
    (b"a: 1\na: 2\n", 2, "duplicate key 'a' (first on line 1)"),
    (b"x: !!python/object/apply:os.system ['touch /tmp/pwned']\n", 1, "not allowed"),
    (b"x: !!python/name:os.system\n", 1, "not allowed"),
    (b"x: !custom 1\n", 1, "not allowed"),
    (b"a: &x [1]\nb: *x\n", None, "anchors and aliases"),
    (b"a: [\n", 2, "invalid YAML"),
    (b"ok: 1\n\xff\xfe\n", 2, "not valid UTF-8"),
    (b"1: a\n", 1, "must be a string"),
    (b"<<: {a: 1}\n", 1, "plain strings"),
    (b"[1, 2]: x\n", 1, "plain strings"),
    (b"a: " + b"[" * 100 + b"]" * 100 + b"\n", 1, "nested"),
]


@pytest.mark.parametrize("text,line,words", BAD)
def test_bad_yaml_is_refused_with_a_line(text, line, words):
    with pytest.raises(YamlError) as info:
        parse(text)
    assert words in info.value.message
    if line is not None:
        assert info.value.line == line


def test_code_running_tag_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(YamlError):
        parse(f"x: !!python/object/apply:os.system ['touch {marker}']\n".encode())
    assert not marker.exists()


def test_plain_data_keeps_lines_and_raw_text():
    data = parse(b"name: x\ntools:\n  python: 3.10\n  node: \"22\"\n")
    assert data == {"name": "x", "tools": {"python": 3.1, "node": "22"}}
    assert data.key_lines == {"name": 1, "tools": 2}
    assert data["tools"].key_lines == {"python": 3, "node": 4}
    assert data["tools"].raw["python"] == "3.10"


def test_empty_document_is_none():
    assert parse(b"") is None
    assert parse(b"# only a comment\n") is None


def test_sha256_hex_matches_hashlib():
    import hashlib

    from envbox.core.digests import sha256_hex

    for data in (b"", b"name: x\n", bytes(range(256)) * 100):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
