"""Strict, safe YAML: plain data with line numbers; tags, aliases and duplicate keys refused."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from envbox.core.digests import sha256_hex, stat_signature
from envbox.fsio import FileRefused, read_limited

MAX_BYTES = 1 << 20  # profiles and catalogs are small; a bigger file is a mistake or an attack

# Only the tags that the safe resolver assigns implicitly (and their explicit `!!` forms).
_ALLOWED_TAGS = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": bool,
    "tag:yaml.org,2002:null": type(None),
    "tag:yaml.org,2002:map": dict,
    "tag:yaml.org,2002:seq": list,
}


class YamlError(Exception):
    """A file that is not acceptable YAML; `line` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


class YMap(dict):
    """A mapping that remembers where it and each key came from."""

    line: int
    key_lines: dict
    raw: dict  # key -> the scalar text as written (to quote `3.10` back to the user)


class YList(list):
    line: int
    item_lines: list


@dataclass(frozen=True)
class Document:
    data: Any
    sha256: str  # of the exact bytes that were parsed
    path: Path
    signature: list  # digests.stat_signature of the file, taken before reading it


def read_bytes(path: Path, *, limit: int = MAX_BYTES) -> bytes:
    return read_file(path, limit=limit)[0]


def read_file(path: Path, *, limit: int = MAX_BYTES) -> tuple[bytes, os.stat_result]:
    """Read a regular file without blocking on FIFOs; a symlink (a dotfiles-managed profile) is
    followed to the regular file it names, never into a device or FIFO."""
    try:
        return read_limited(path, limit=limit, follow=True)
    except FileRefused as exc:
        raise YamlError(exc.why) from None


def parse(text: bytes) -> Any:
    """Bytes -> plain data (YMap / YList / scalars). Raises YamlError with a line number."""
    try:
        source = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = text[: exc.start].count(b"\n") + 1
        raise YamlError("is not valid UTF-8", line) from None
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError("invalid YAML: nested too deeply") from None
    if node is None:
        return None
    try:
        return _convert(node, set(), depth=0)
    except RecursionError:
        raise YamlError("nested too deeply", node.start_mark.line + 1) from None


_MAX_DEPTH = 64


def _convert(node: yaml.Node, seen: set, *, depth: int) -> Any:
    line = node.start_mark.line + 1
    if depth > _MAX_DEPTH:
        raise YamlError(f"nested more than {_MAX_DEPTH} levels deep", line)
    if id(node) in seen:
        raise YamlError("YAML anchors and aliases are not supported", line)
    seen.add(id(node))
    if node.tag not in _ALLOWED_TAGS:
        raise YamlError(f"YAML tag {node.tag!r} is not allowed (only plain data)", line)
    if isinstance(node, yaml.MappingNode):
        return _convert_map(node, seen, depth=depth)
    if isinstance(node, yaml.SequenceNode):
        out = YList(_convert(item, seen, depth=depth + 1) for item in node.value)
        out.line = line
        out.item_lines = [item.start_mark.line + 1 for item in node.value]
        return out
    return _scalar(node)


def _convert_map(node: yaml.MappingNode, seen: set, *, depth: int) -> YMap:
    out = YMap()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.raw = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            raise YamlError("keys must be plain strings", key_line)
        key = _scalar(key_node)
        if not isinstance(key, str):
            raise YamlError(f"key {key_node.value!r} must be a string (quote it)", key_line)
        if key in out:
            first = out.key_lines[key]
            raise YamlError(f"duplicate key {key!r} (first on line {first})", key_line)
        out[key] = _convert(value_node, seen, depth=depth + 1)
        out.key_lines[key] = key_line
        if isinstance(value_node, yaml.ScalarNode):
            out.raw[key] = value_node.value
    return out


def _scalar(node: yaml.ScalarNode) -> Any:
    line = node.start_mark.line + 1
    if node.tag not in _ALLOWED_TAGS:
        raise YamlError(f"YAML tag {node.tag!r} is not allowed (only plain data)", line)
    loader = yaml.SafeLoader("")
    try:
        value = loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise YamlError(f"bad value {node.value!r}: {exc}", line) from None
    finally:
        loader.dispose()
    if "\x00" in node.value:
        raise YamlError("NUL character in a value", line)
    return value


def load(path: Path, *, limit: int = MAX_BYTES) -> Document:
    """Read and parse one file. Raises YamlError (without the file name: callers add it)."""
    data, st = read_file(path, limit=limit)
    return Document(parse(data), sha256_hex(data), path, stat_signature(st))


