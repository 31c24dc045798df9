"""The post steps that finish a Python layer (envbox/store/pythonparts.py), on small trees
shaped like the real ones, and what the shipped catalog asks of them. No network."""

from __future__ import annotations

import subprocess
import sys

import pytest

from envbox.core.catalog import builtin_dir, load_catalog, pick
from envbox.core.errors import BuildError
from envbox.sources import checks
from envbox.store import pythonparts

SHIPPED = load_catalog((builtin_dir(),), checks())
HOST_PY = "/usr/bin/python3"  # Debian's (3.11 on bookworm, 3.13 on trixie): its site adds /usr/lib/python3/dist-packages

# pip 20.3.4's and setuptools 44.1.1's own entry_points.txt: built under 3.8, so they name
# pip3, pip3.8 and easy_install-3.8.
PIP_ENTRY_POINTS = "[console_scripts]\npip = pip._internal.cli.main:main\npip3 = pip._internal.cli.main:main\npip3.8 = pip._internal.cli.main:main\n"
SETUPTOOLS_ENTRY_POINTS = ("[console_scripts]\neasy_install = setuptools.command.easy_install:main\n"
                           "easy_install-3.8 = setuptools.command.easy_install:main\n\n[egg_info.writers]\nPKG-INFO = x:y\n")


def site_with(tmp_path, interpreter="python2.7", **dists):
    site = tmp_path / "usr/lib" / interpreter / "dist-packages"
    for name, text in dists.items():
        (site / f"{name}.dist-info").mkdir(parents=True)
        (site / f"{name}.dist-info/entry_points.txt").write_text(text)
    return site


def test_console_scripts_name_pip_for_the_layers_python_not_the_wheels_builder(tmp_path):
    site_with(tmp_path, **{"pip-20.3.4": PIP_ENTRY_POINTS, "setuptools-44.1.1": SETUPTOOLS_ENTRY_POINTS})
    names = pythonparts.console_scripts(tmp_path, "python2.7")
    assert names == ["easy_install", "easy_install-2.7", "pip", "pip2", "pip2.7"]
    assert sorted(p.name for p in (tmp_path / "usr/bin").iterdir()) == names
    text = (tmp_path / "usr/bin/pip2.7").read_text()
    assert text.startswith("#!/usr/bin/python2.7\n") and "from pip._internal.cli.main import main\n" in text
    assert (tmp_path / "usr/bin/pip").stat().st_mode & 0o777 == 0o755
    # Run again (a second part with the same step): the same scripts, nothing refused.
    assert pythonparts.console_scripts(tmp_path, "python2.7") == names


def test_a_console_script_calls_its_entry_point_and_exits_with_its_status(tmp_path):
    site = site_with(tmp_path, "python3.11", **{"tool-1.0": "[console_scripts]\ntool = tool.cli:App.run\n"})
    (site / "tool").mkdir()
    (site / "tool/__init__.py").write_text("")
    (site / "tool/cli.py").write_text("import sys\nclass App:\n    @staticmethod\n    def run():\n        print('ran', sys.argv[1:]); return 3\n")
    pythonparts.console_scripts(tmp_path, "python3.11")
    ran = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); sys.argv = ['tool', 'x']; "
                          f"exec(open({str(tmp_path / 'usr/bin/tool')!r}).read())"], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (3, "ran ['x']\n"), ran.stderr


@pytest.mark.parametrize("entry, message", [
    ("[console_scripts]\npip = pip:main; import os\n", "envbox cannot write"),
    ("[console_scripts]\n../x = pip:main\n", "envbox cannot write"),
    ("[console_scripts\n", "cannot read"),
])
def test_console_scripts_refuse_entries_that_are_not_a_module_and_a_name(tmp_path, entry, message):
    site_with(tmp_path, **{"pip-20.3.4": entry})
    with pytest.raises(BuildError, match=message):
        pythonparts.console_scripts(tmp_path, "python2.7")
    assert not (tmp_path / "usr/bin").exists() or not any((tmp_path / "usr/bin").iterdir())


def test_console_scripts_never_replace_a_program_of_the_packages(tmp_path):
    site_with(tmp_path, **{"pip-20.3.4": PIP_ENTRY_POINTS})
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/pip2").write_text("#!/bin/sh\n")
    with pytest.raises(BuildError, match="already has usr/bin/pip2"):
        pythonparts.console_scripts(tmp_path, "python2.7")
    assert (tmp_path / "usr/bin/pip2").read_text() == "#!/bin/sh\n"


def own_site_sys_path(tmp_path, interpreter="python3.11", executable=HOST_PY):
    """sys.path of the host's Debian python3 once site has also read the layer's versioned
    dist-packages (as it does last, after /usr/lib/python3/dist-packages)."""
    own = tmp_path / "usr/lib" / interpreter / "dist-packages"
    code = f"import site, sys; site.addsitedir({str(own)!r}); print('\\n'.join(sys.path))"
    out = subprocess.run([executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


@pytest.mark.skipif(not __import__("os").path.exists(HOST_PY), reason="needs Debian's python3")
def test_own_site_takes_the_hosts_dist_packages_off_sys_path(tmp_path):
    assert pythonparts.HOST_DIST in own_site_sys_path(tmp_path)  # the frozen site added it
    pythonparts.python_own_site(tmp_path, "python3.11")
    path = own_site_sys_path(tmp_path)
    assert pythonparts.HOST_DIST not in path and "/usr/lib/python3.11" in path
    assert not any(p.startswith(pythonparts.HOST_DIST + "/") for p in path)


# What a host .pth leaves behind before the layer's own .pth runs (setuptools' distutils-
# precedence.pth imports _distutils_hack from the host's dir and puts its finder on
# sys.meta_path), made here by hand with a module that claims a file in the host's dir.
HOST_PTH_LEFTOVERS = f"""
import sys, types
d = {pythonparts.HOST_DIST!r}
sys.path.append(d)
hack = types.ModuleType("_hostpth_hack")
hack.__file__ = d + "/_hostpth_hack/__init__.py"
Finder = type("Finder", (), {{"__module__": "_hostpth_hack", "find_spec": lambda self, *a: None}})
hack.Finder = Finder
sys.modules["_hostpth_hack"] = hack
sys.meta_path.insert(0, Finder())
mine = types.ModuleType("mine")
mine.__file__ = d + "x/mine.py"  # a sibling directory, not the host's
sys.modules["mine"] = mine
"""


@pytest.mark.parametrize("provides_python3", [True, False])
def test_own_site_unloads_what_the_hosts_pth_files_imported(tmp_path, provides_python3):
    pythonparts.python_own_site(tmp_path, "python3.11", provides_python3=provides_python3)
    own = tmp_path / "usr/lib/python3.11/dist-packages"
    code = HOST_PTH_LEFTOVERS + (
        f"import site; site.addsitedir({str(own)!r})\n"
        "print(d in sys.path, '_hostpth_hack' in sys.modules, any(type(f).__name__ == 'Finder' for f in sys.meta_path), 'mine' in sys.modules)"
    )
    # Run by its versioned name (not as `python3`, which keeps the host's packages without the part).
    versioned = tmp_path / "python3.11"
    versioned.symlink_to(sys.executable)
    out = subprocess.run([str(versioned), "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "True"]


@pytest.mark.skipif(not __import__("os").path.exists(HOST_PY), reason="needs Debian's python3")
def test_without_the_python3_part_the_hosts_python3_keeps_the_hosts_packages(tmp_path):
    """Debian 12's python3 is 3.11: the 3.11 layer's binary runs for the host's python3 scripts."""
    pythonparts.python_own_site(tmp_path, "python3.11", provides_python3=False)
    assert pythonparts.HOST_DIST in own_site_sys_path(tmp_path, executable=HOST_PY)
    versioned = __import__("os").path.realpath(HOST_PY)  # the same binary by its versioned name
    assert pythonparts.HOST_DIST not in own_site_sys_path(tmp_path, executable=versioned)


def test_own_site_leaves_the_host_in_when_the_profile_asked_for_host_site(tmp_path):
    own = tmp_path / "usr/lib/python3.11/dist-packages"
    own.mkdir(parents=True)
    (own / pythonparts.HOST_SITE_PTH).write_text("import site\n")
    pythonparts.python_own_site(tmp_path, "python3.11")
    assert not (own / pythonparts.OWN_SITE_PTH).exists()


BULLSEYE_ENSUREPIP = """\
_PROJECTS = [
    "setuptools",
    "pip",
    "pkg_resources",
]
def version():
    wheel_names = glob.glob('/usr/share/python-wheels/pip-*.whl')
def copy_wheels(wheels, destdir, paths):
    wheel_names = glob.glob(
        '/usr/share/python-wheels/{}-*.whl'.format(project))
    path = os.path.join('/usr/share/python-wheels', wheel_name)
    venv_wheel_dir = os.path.join(sys.prefix, 'share', 'python-wheels')
"""


def ensurepip_layer(tmp_path, text=BULLSEYE_ENSUREPIP, wheels=("pip-20.3.4-py2.py3-none-any.whl", "setuptools-44.1.1-py2.py3-none-any.whl")):
    lib = tmp_path / "usr/lib/python3.9"
    (lib / "ensurepip").mkdir(parents=True)
    (lib / "ensurepip/__init__.py").write_text(text)
    (lib / pythonparts.WHEELS_DIR).mkdir()
    for name in wheels:
        (lib / pythonparts.WHEELS_DIR / name).write_text("w")
    return lib / "ensurepip/__init__.py"


def test_ensurepip_reads_the_parts_own_wheels_and_only_projects_that_have_one(tmp_path):
    ensurepip = ensurepip_layer(tmp_path)
    pythonparts.ensurepip_wheels(tmp_path, "python3.9")
    text = ensurepip.read_text()
    assert "/usr/share/python-wheels" not in text and text.count("'/usr/lib/python3.9/envbox-wheels") == 3
    assert "os.path.join(sys.prefix, 'share', 'python-wheels')" in text  # the venv's own copy
    assert text.startswith("_PROJECTS = ['setuptools', 'pip']\n")  # setuptools' wheel has pkg_resources
    compile(text, "ensurepip", "exec")


@pytest.mark.parametrize("text, wheels, message", [
    ("_bundled = 'x'\n", ("pip-1-py3-none-any.whl",), "does not read"),
    (BULLSEYE_ENSUREPIP, ("wheel-1-py3-none-any.whl",), "none of ensurepip's projects"),
])
def test_ensurepip_wheels_refuses_what_it_cannot_point(tmp_path, text, wheels, message):
    ensurepip = ensurepip_layer(tmp_path, text, wheels)
    with pytest.raises(BuildError, match=message):
        pythonparts.ensurepip_wheels(tmp_path, "python3.9")
    assert ensurepip.read_text() == text


def test_a_kept_wheel_is_the_file_itself_never_over_a_link_or_a_file(tmp_path):
    from envbox.sources import wheel

    whl = tmp_path / "pip-20.3.4-py2.py3-none-any.whl"
    whl.write_bytes(b"PK wheel")
    root = tmp_path / "layer"
    root.mkdir()
    wheel._keep(whl, root, "usr/lib/python3.9/envbox-wheels/" + whl.name)
    kept = root / "usr/lib/python3.9/envbox-wheels" / whl.name
    assert kept.read_bytes() == b"PK wheel" and kept.stat().st_mode & 0o777 == 0o644
    with pytest.raises(BuildError, match="already has"):
        wheel._keep(whl, root, "usr/lib/python3.9/envbox-wheels/" + whl.name)
    (root / "usr/share").mkdir()
    (root / "usr/share/wheels").symlink_to(tmp_path)
    with pytest.raises(BuildError, match="not a directory"):
        wheel._keep(whl, root, "usr/share/wheels/" + whl.name)
    assert not (tmp_path / whl.name).with_suffix(".x").exists() and list(tmp_path.glob("*.whl")) == [whl]


@pytest.mark.parametrize("spec, message", [
    ({}, "either map"),
    ({"map": {"a/": "usr/a/"}, "keep": "usr/w/"}, "either map"),
    ({"keep": "usr/w"}, "ending in '/'"),
    ({"keep": "home/w/"}, "usr/, etc/ or opt/"),
    ({"keep": "usr/../w/"}, "'..'"),
])
def test_wheel_sources_take_map_or_keep(spec, message):
    from envbox.sources import wheel

    base = {"kind": "wheel", "requirement": "pip==20.3.4", "sha256": "0" * 64}
    with pytest.raises(ValueError, match=message):
        wheel.check({**base, **spec})
    wheel.check({**base, "keep": "usr/lib/python3.9/envbox-wheels/"})


@pytest.mark.parametrize("version, with_parts, has_own_site", [
    ("3.11", (), True), ("3.11", ("host-site",), False), ("3.13", (), True), ("3.14", (), True),
])
def test_every_python3_release_leaves_the_host_out_unless_asked(version, with_parts, has_own_site):
    release = pick(SHIPPED, "python", version).select(with_parts)
    steps = release.post_steps
    assert ({"python-own-site": f"python{version}"} in steps) is True
    assert ({"python-host-site": f"python{version}"} in steps) is (not has_own_site)
    # host-site's step runs before the release's own, so own-site sees its .pth and stays out
    if not has_own_site:
        assert steps.index({"python-host-site": f"python{version}"}) < steps.index({"python-own-site": f"python{version}"})


@pytest.mark.parametrize("interpreter, names", [
    ("python2.7", ["pip", "pip2", "pip2.7"]),
    ("python3.9", ["pip", "pip3", "pip3.9"]),
    ("python3.13", ["pip", "pip3", "pip3.13"]),
    ("python3.14", ["pip", "pip3", "pip3.14"]),
])
def test_pips_versioned_scripts_are_the_layers_python_not_the_wheels_builder(tmp_path, interpreter, names):
    site_with(tmp_path, interpreter, **{"pip-25.1.1": PIP_ENTRY_POINTS})
    assert pythonparts.console_scripts(tmp_path, interpreter) == names
    assert all((tmp_path / "usr/bin" / n).read_text().startswith(f"#!/usr/bin/{interpreter}\n") for n in names)


@pytest.mark.parametrize("version", ["2.7", "3.9", "3.11", "3.13", "3.14"])
def test_every_python_release_offers_pip_a_venv_and_headers(version):
    release = pick(SHIPPED, "python", version)
    assert {"pip", "dev", "tk", "virtualenv" if version == "2.7" else "venv"} <= set(release.part_specs), sorted(release.part_specs)
    with_pip = release.select(("pip",))
    interpreter = f"python{version}"
    assert {"console-scripts": interpreter} in with_pip.post_steps
    pip = [s for s in with_pip.sources if s.get("requirement", "").startswith("pip==")]
    pip_version = pip[0]["requirement"].removeprefix("pip==")
    site = f"usr/lib/{interpreter}/dist-packages"
    assert len(pip) == 1 and set(pip[0]["map"].values()) == {f"{site}/pip/", f"{site}/pip-{pip_version}.dist-info/"}


def test_the_pip_parts_write_console_scripts_and_39_has_a_venv_part():
    p27 = pick(SHIPPED, "python", "2.7").select(("pip",))
    assert {"console-scripts": "python2.7"} in p27.post_steps
    p39 = pick(SHIPPED, "python", "3.9").select(("venv",))
    assert {"ensurepip-wheels": "python3.9"} in p39.post_steps
    assert "python3.9-venv" in p39.source["packages"] and "python-pip-whl" in p39.source["skip"]
    assert [(s["requirement"], s["keep"]) for s in p39.sources[1:]] == [
        ("pip==20.3.4", "usr/lib/python3.9/envbox-wheels/"), ("setuptools==44.1.1", "usr/lib/python3.9/envbox-wheels/")]
