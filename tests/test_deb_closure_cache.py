"""The deb source keeps each computed closure beside the lists; any input change misses."""

from pathlib import Path

from envbox.sources import debclosure
from envbox.sources import BuildContext, deb


def ctx(tmp_path):
    return BuildContext(root=tmp_path / "root", work=tmp_path / "work", downloads=tmp_path / "dl")


def test_roundtrip_and_keys(tmp_path):
    lists = tmp_path / "Packages"
    lists.write_text("Package: a\nVersion: 1\n")
    c = ctx(tmp_path)
    spec = {"suite": "bullseye", "packages": ["python2.7"]}
    key = deb._closure_cache(c, spec, "amd64", [(lists, "o")], "status one")
    closure = debclosure.Closure(
        (debclosure.Pulled("a", "1", "amd64", "pool/a_1_amd64.deb", 10, "f" * 64, "o", "requested"),), ("w",)
    )
    assert deb._read_closure(key) is None
    deb._write_closure(key, closure)
    assert deb._read_closure(key) == closure
    assert deb._closure_cache(c, spec, "amd64", [(lists, "o")], "status two") != key
    assert deb._closure_cache(c, dict(spec, skip=["x"]), "amd64", [(lists, "o")], "status one") != key
    lists.write_text("Package: a\nVersion: 2\n")
    assert deb._closure_cache(c, spec, "amd64", [(lists, "o")], "status one") != key
