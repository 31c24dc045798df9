"""Hand-written matchers (the launch path does not import re) agree with their documented patterns."""

import re

import pytest

from envbox.cgroups.control import LEAF_PATTERN, parse_leaf
from envbox.core.names import NAME_PATTERN, is_valid_name

NAMES = ["a", "chrome", "py-host", "node.js", "a_b", "0day", "x" * 64, "x" * 65, "", ".", "..", "a..b", "a.",
         "-rf", "A", "a/b", "a b", " a", "a\n", "a\x00b", "é", "memory.max", "cgroup.procs", "_x", "a-", "1.2.3"]


@pytest.mark.parametrize("name", NAMES)
def test_is_valid_name_matches_the_pattern(name):
    by_pattern = re.fullmatch(NAME_PATTERN, name) is not None and not name.endswith(".") and ".." not in name
    assert is_valid_name(name) == by_pattern


LEAVES = ["envbox-chrome-123-456-1", "envbox-py-host-1-2-3", "envbox-a-1-2-3.scope", "envbox-memory.max-9-9-9",
          "envbox--1-2-3", "envbox-a-1-2", "envbox-a-x-2-3", "other-a-1-2-3", "envbox-a-1-2-3.scopes", "envbox-a-1-2-٣",
          "envbox-a-b-c-1-2-3", "envbox"]


@pytest.mark.parametrize("leaf", LEAVES)
def test_parse_leaf_matches_the_pattern(leaf):
    match = re.fullmatch(LEAF_PATTERN, leaf, re.ASCII)
    parsed = parse_leaf(leaf)
    if match is None:
        assert parsed is None or parsed["profile"] == "" or not re.fullmatch(r"[a-z0-9._-]+", parsed["profile"])
    else:
        assert parsed == match.groupdict()
