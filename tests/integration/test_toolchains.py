"""Complete toolchains (network): what a user expects of "Python 3.13" or "Node 22" works
in a launch as it would on a machine where that version is installed: python3 is the pinned
one, pip/venv/headers on request, npm -g, node-gyp, the host's trust store behind this
machine's TLS-inspecting proxy, with no certificate variables set by the caller or profile."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import shared_cache

pytestmark = [pytest.mark.network, pytest.mark.slow]

# Nothing of the caller's certificate configuration reaches envbox: the env's vars are only
# HOME, USER, PATH, LANG and XDG_* (conftest), so trust must come from the releases.
NO_CA_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT")

ADDON_C = r"""
#include <node_api.h>
static napi_value Hello(napi_env env, napi_callback_info info) {
  napi_value s; napi_create_string_utf8(env, "addon ok", NAPI_AUTO_LENGTH, &s); return s; }
static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn; napi_create_function(env, NULL, 0, Hello, NULL, &fn);
  napi_set_named_property(env, exports, "hello", fn); return exports; }
NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
"""

CEXT_C = r"""
#include <Python.h>
static PyObject *hello(PyObject *self, PyObject *args) { return PyUnicode_FromString("cext " PY_VERSION); }
static PyMethodDef methods[] = {{"hello", hello, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "spam", NULL, -1, methods};
PyMODINIT_FUNC PyInit_spam(void) { return PyModule_Create(&mod); }
"""


def launch(env, name, script, timeout=600):
    assert not any(v in env.vars for v in NO_CA_VARS)
    result = env.envbox("launch", name, "--", script, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_node_gyp_uses_the_profiles_python3_and_npm_global_works(root_env):
    env = root_env
    shared_cache(env)
    env.write_profile("web", 'command: [sh, -c]\ntools:\n  node: "22"\n  python: "3.13"\n')
    assert env.envbox("build", "web", timeout=900).returncode == 0
    which = env.envbox("which", "web", "/usr/bin/python3")
    assert which.returncode == 0 and "python3 -> python3.13: python 3.13.5 +python3" in which.stdout, which.stdout
    addon = env.home / "addon"
    addon.mkdir()
    (addon / "binding.gyp").write_text('{"targets": [{"target_name": "hello", "sources": ["hello.c"]}]}')
    (addon / "hello.c").write_text(ADDON_C)
    (addon / "package.json").write_text('{"name": "hello", "version": "1.0.0", "gypfile": true}')
    out = launch(env, "web", (
        "cd addon && npm install --foreground-scripts --loglevel=info 2>&1 | grep 'find Python'"
        " && node -e 'console.log(require(\"./build/Release/hello.node\").hello())'"
        # node itself (not npm, which also reads /etc/npmrc) trusts the host's store
        " && node -e 'require(\"https\").get(\"https://registry.npmjs.org/\", r => { console.log(\"tls\", r.statusCode); process.exit(0) })"
        ".on(\"error\", e => { console.log(e.code); process.exit(1) })'"
        " && npm install -g --no-audit --no-fund cowsay@1.6.0 >/dev/null 2>&1 && npm prefix -g"
    ))
    lines = out.splitlines()
    assert 'using Python version 3.13.5 found at "/usr/bin/python3"' in lines[0], out
    assert lines[1] == "addon ok"
    assert lines[2] == "tls 200"
    assert lines[3] == f"{env.home}/.local/share/envbox-prefixes/web/node-22.20.0"
    # The next launch finds the global package's binary by name.
    assert launch(env, "web", "cowsay -W 20 moo | sed -n 2p").strip() == "< moo >"
    assert not os.path.exists("/usr/lib/envbox"), "nothing leaks to the host"


def test_python_313_venv_pip_and_a_c_extension_against_the_layers_headers(root_env):
    env = root_env
    shared_cache(env)
    env.write_profile("p313", 'command: [sh, -c]\ntools:\n  python: {version: "3.13", with: [dev, venv]}\n')
    (env.home / "spam.c").write_text(CEXT_C)
    (env.home / "setup.py").write_text('from setuptools import setup, Extension\nsetup(name="spam", ext_modules=[Extension("spam", ["spam.c"])])\n')
    out = launch(env, "p313", (
        "python3 -c 'import sys; print(sys.version.split()[0]); print(\"/usr/lib/python3/dist-packages\" in sys.path)'"
        # -I ignores PYTHON_FROZEN_MODULES: the frozen site adds the host's dir, own-site drops it
        " && python3 -I -c 'import sys; print(\"/usr/lib/python3/dist-packages\" in sys.path)'"
        " && python3 -m venv v && v/bin/pip install -q --disable-pip-version-check setuptools==80.9.0"
        " && v/bin/python setup.py -q build_ext -i >/dev/null 2>&1"
        " && v/bin/python -c 'import spam, setuptools; print(spam.hello(), setuptools.__version__)'"
    ), timeout=900)
    assert out.splitlines() == ["3.13.5", "False", "False", "cext 3.13.5 80.9.0"], out


def test_python_27_pip_user_site_and_virtualenv(root_env):
    env = root_env
    shared_cache(env)
    env.write_profile("p27", 'command: [sh, -c]\ntools:\n  python: {version: "2.7", with: [pip, virtualenv]}\n')
    out = launch(env, "p27", (
        # pip on PATH is the layer's, under 2.7 (not the host's Python 3 pip at /usr/bin/pip)
        "for p in pip pip2 pip2.7; do $p --version 2>/dev/null; done"
        " && pip install -q --user attrs==21.4.0 2>/dev/null"
        " && python -c 'import attr; print(\"%s %s\" % (attr.__version__, attr.__file__.startswith(\"'\"$HOME\"'/.local\")))'"
        " && virtualenv -q ve && ve/bin/pip install -q six==1.16.0 2>/dev/null"
        " && ve/bin/python -c 'import sys, six; print(\"%s %s\" % (sys.version.split()[0], six.__version__))'"
        " && command -v python3"
    ), timeout=900)
    pip = "pip 20.3.4 from /usr/lib/python2.7/dist-packages/pip (python 2.7)"
    assert out.splitlines() == [pip, pip, pip, "21.4.0 True", "2.7.18 1.16.0", "/usr/bin/python3"], out


# version -> pip of the `pip` part, and whether Debian marks the interpreter externally managed
# (PEP 668: bookworm on; pip then refuses --user without --break-system-packages, as on Debian).
PIP_PARTS = {"3.9": ("20.3.4", False), "3.11": ("23.0.1", True), "3.13": ("25.1.1", True), "3.14": ("26.3", True)}


@pytest.mark.parametrize("version", sorted(PIP_PARTS))
def test_a_python_3_pip_part_is_that_pythons_pip(env, version):
    """Without the part, /usr/bin/pip* are the host's, run by the pinned python3 that cannot
    import the host's pip; with it pip, pip3 and pip3.X are the release's own. Root and rootless."""
    shared_cache(env)
    pip_version, managed = PIP_PARTS[version]
    env.write_profile("bare", f'command: [sh, -c]\ntools:\n  python: "{version}"\n')
    env.write_profile("pip", f'command: [sh, -c]\ntools:\n  python: {{version: "{version}", with: [pip]}}\n')
    if version != "3.11":  # the host's pip under the host's own 3.11 still works
        assert env.envbox("launch", "bare", "--", "python3 -m pip --version").returncode != 0
    out = launch(env, "pip", (
        f"for p in pip pip3 pip{version} 'python3 -m pip'; do $p --version; done"
        " && if pip install -q --user --disable-pip-version-check six==1.16.0 2>err; then echo allowed; else grep -o externally-managed-environment err; fi"
        # pip 20.3 has no --break-system-packages; as a variable, older pips ignore it
        " && PIP_BREAK_SYSTEM_PACKAGES=1 pip install -q --user --disable-pip-version-check six==1.16.0"
        " && python3 -c 'import site, six; print(six.__version__, six.__file__.startswith(site.USER_SITE))'"
    ), timeout=900)
    own = f"pip {pip_version} from /usr/lib/python{version}/dist-packages/pip (python {version})"
    refusal = "externally-managed-environment" if managed else "allowed"
    assert out.splitlines() == [own] * 4 + [refusal, "1.16.0 True"], out


def test_python_39_venv_and_pip_install_of_a_wheel(env):
    """bullseye's ensurepip with the pip and setuptools wheels of bullseye's versions (PyPI's,
    kept apart from the host's pip wheel); root and rootless."""
    shared_cache(env)
    env.write_profile("p39", 'command: [sh, -c]\ntools:\n  python: {version: "3.9", with: [venv]}\n')
    out = launch(env, "p39", (
        "python3 -c 'import sys; print(sys.version.split()[0]); print(\"/usr/lib/python3/dist-packages\" in sys.path)'"
        " && python3 -m venv v && v/bin/pip --version | cut -d' ' -f1,2"
        " && v/bin/pip install -q --disable-pip-version-check six==1.16.0"
        " && v/bin/python -c 'import sys, six; print(sys.version.split()[0], six.__version__, six.__file__.startswith(sys.prefix))'"
    ), timeout=900)
    assert out.splitlines() == ["3.9.2", "False", "pip 20.3.4", "3.9.2 1.16.0 True"], out


def test_python_311_leaves_the_hosts_dist_packages_out_unless_host_site(env):
    """3.11 is the host's own version with a frozen site: the layer's own-site .pth drops the
    host's dir; with host-site it stays, and the host's packages import. Root and rootless."""
    shared_cache(env)
    host = "/usr/lib/python3/dist-packages"
    # a pure-Python package of the host's that the host's python3 imports (whichever is installed)
    mod = next(p for p in sorted(os.listdir(host)) if p.isidentifier() and os.path.exists(f"{host}/{p}/__init__.py")
               and not any(f.endswith(".so") for _, _, files in os.walk(f"{host}/{p}") for f in files)
               and subprocess.run(["/usr/bin/python3", "-c", f"import {p}"], capture_output=True).returncode == 0)
    env.write_profile("own", 'command: [sh, -c]\ntools:\n  python: "3.11"\n')
    env.write_profile("host", 'command: [sh, -c]\ntools:\n  python: {version: "3.11", with: [host-site]}\n')
    check = ("for f in '' -I; do python3 $f -c 'import sys; print(sys.version.split()[0], \"/usr/lib/python3/dist-packages\" in sys.path)'; done"
             f"; python3 -c 'import {mod}' 2>/dev/null && echo host-module || echo no-host-module")
    assert launch(env, "own", check).splitlines() == ["3.11.2 False", "3.11.2 False", "no-host-module"], mod
    # What the host's .pth files imported before the layer's own .pth ran is unloaded again.
    leftover = ("for f in '' -I; do python3 $f -c 'import sys; print(sorted(n for n, m in sys.modules.items()"
                " if (getattr(m, \"__file__\", None) or \"\").startswith(\"/usr/lib/python3/dist-packages/\")))'; done")
    assert launch(env, "own", leftover).splitlines() == ["[]", "[]"]
    assert launch(env, "host", check).splitlines() == ["3.11.2 True", "3.11.2 True", "host-module"], mod
    # Without the python3 part, /usr/bin/python3 is the host's (on Debian 12 the same 3.11
    # binary): host scripts run by it keep the host's packages; `python` is the release's.
    env.write_profile("keep3", 'command: [sh, -c]\ntools:\n  python: {version: "3.11", without: [python3]}\n')
    both = "for p in python python3; do $p -c 'import sys; print(\"/usr/lib/python3/dist-packages\" in sys.path)'; done"
    assert launch(env, "keep3", both).splitlines() == ["False", "True"]


def test_without_python3_the_host_python3_stays(env):
    """Also rootless; and the lock file pins the release with its parts (--frozen follows it)."""
    shared_cache(env)
    env.write_profile("keep", 'command: [sh, -c]\ntools:\n  python: {version: "3.13", without: [python3]}\n')
    out = launch(env, "keep", "python --version; python3 --version")
    assert out.splitlines() == ["Python 3.13.5", "Python 3.11.2"]
    assert "the host" in env.envbox("which", "keep", "/usr/bin/python3").stdout
    assert env.envbox("lock", "keep").returncode == 0
    frozen = env.envbox("launch", "--frozen", "keep", "--", "python3 --version")
    assert frozen.returncode == 0 and frozen.stdout.strip() == "Python 3.11.2", frozen.stderr


def test_node_12_and_python_27_build_node_sass_from_source(root_env):
    """The issue's real project: node-gyp 3 (node-sass's own) finds `python2` = the 2.7 layer,
    headers from the node 12 layer (npm_config_nodedir), libsass compiled on every core (node-gyp
    reads JOBS); nothing is downloaded but npm packages. The slowest test in CI (minutes)."""
    env = root_env
    shared_cache(env)
    env.write_profile("sass", 'command: [sh, -c]\ntools:\n  node: "12"\n  python: "2.7"\n')
    (env.home / "package.json").write_text('{"name": "s", "version": "1.0.0", "license": "MIT", "repository": "x"}')
    (env.home / "t.scss").write_text("$c: #333; a { b { color: $c; } }\n")
    out = launch(env, "sass", (
        "JOBS=max npm install --no-audit --no-fund --loglevel=verbose node-sass@4.14.1 --build-from-source > build.log 2>&1"
        " && grep -m1 -o 'which. succeeded python2 /usr/bin/python2' build.log"
        " && node -e 'console.log(require(\"node-sass\").renderSync({file: \"t.scss\", outputStyle: \"compact\"}).css.toString().trim())'"
    ), timeout=1800)
    assert out.splitlines() == ["which` succeeded python2 /usr/bin/python2", "a b { color: #333; }"], out
