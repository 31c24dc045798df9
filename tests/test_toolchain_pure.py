"""Complete toolchains, the pure parts: release parts, the tool mapping syntax, the app's
environment (certificates, PATH, defaults), writable prefixes, the python-site step."""

from __future__ import annotations

import json

import pytest

from envbox.core import sandboxargs
from envbox.core.catalog import builtin_dir, load_catalog, pick
from envbox.core.errors import CatalogError, ProfileError
from envbox.core.plan import DEFAULT_PATH, Stored, build_plan
from envbox.core.profile import load_profile
from envbox.core.resolve import resolve
from envbox.sources import checks
from envbox.store import postbuild

SHIPPED = load_catalog((builtin_dir(),), checks())


def profile(tmp_path, text, name="p"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_profile(path, "user")


# ---- parts ------------------------------------------------------------------------------------


def test_python3_release_provides_python3_by_default_and_can_leave_it_out():
    rel = pick(SHIPPED, "python", "3.13")
    default = rel.select()
    assert dict(default.links)["usr/bin/python3"] == "python3.13"
    assert default.chosen == ("python3",) and "+python3" in default.label()
    kept = rel.select(without=("python3",))
    assert "usr/bin/python3" not in dict(kept.links)
    assert kept.recipe_key() != default.recipe_key()


def test_no_release_of_python_2_provides_python3():
    for rel in SHIPPED.of("python"):
        links = dict(rel.select().links)
        if rel.version.startswith("2."):
            assert "usr/bin/python3" not in links
        else:
            assert links["usr/bin/python3"] == "python" + ".".join(rel.version.split(".")[:2])


def test_a_deb_part_joins_the_closure_and_keeps_the_post_order():
    rel = pick(SHIPPED, "python", "3.13").select(("dev", "venv"))
    assert rel.source["packages"][:1] == ["python3.13"]
    assert {"python3.13-dev", "python3.13-venv", "python3-pip-whl"} <= set(rel.source["packages"])
    steps = [next(iter(s)) for s in rel.post_steps]
    assert steps.index("python-site") < steps.index("pycompile") == len(steps) - 1
    assert rel.chosen == ("dev", "python3", "venv")


def test_wheel_parts_add_sources_and_env_to_the_same_layer():
    rel = pick(SHIPPED, "python", "2.7").select(("pip", "virtualenv"))
    reqs = [s.get("requirement") for s in rel.sources[1:]]
    assert "pip==20.3.4" in reqs and "setuptools==44.1.1" in reqs and "virtualenv==20.15.1" in reqs
    assert dict(rel.env)["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    assert "sources" in rel.recipe() and "sources" not in pick(SHIPPED, "python", "2.7").recipe()


def test_unknown_part_is_an_error_listing_the_parts():
    with pytest.raises(CatalogError) as exc:
        pick(SHIPPED, "python", "3.13").select(("numpy",))
    assert "no part 'numpy'" in exc.value.message and "venv" in exc.value.message


def test_host_site_part_writes_a_pth_step():
    rel = pick(SHIPPED, "python", "3.13").select(("host-site",))
    assert {"python-host-site": "python3.13"} in rel.post_steps


# ---- the profile syntax -------------------------------------------------------------------------


def test_tool_mapping_with_version_and_parts(tmp_path):
    prof = profile(tmp_path, 'command: [x]\ntools:\n  python: {version: "2.7", with: [pip, dev], without: [tk]}\n')
    spec = prof.tools[0]
    assert (spec.constraint, spec.with_parts, spec.without) == ("2.7", ("pip", "dev"), ("tk",))
    assert spec.describe() == "2.7 +pip +dev -tk"


@pytest.mark.parametrize("tools,message", [
    ('python: {version: 3.10, with: [pip]}', "read by YAML as the number"),
    ('python: {version: "3", host: /usr/bin/python3}', "exclude each other"),
    ('python: {with: [pip]}', "with/without go with a version"),
    ('python: {version: "3", with: pip}', "must be a list of part names"),
    ('python: {version: "3", with: [dev], without: [dev]}', "both in with and without"),
    ('python: {version: {host: /x}}', "must be a version string"),
])
def test_bad_tool_mappings_are_one_clear_error(tmp_path, tools, message):
    with pytest.raises(ProfileError) as exc:
        profile(tmp_path, f"command: [x]\ntools:\n  {tools}\n")
    assert message in exc.value.message and ":3:" in exc.value.message


def test_resolve_applies_the_parts(tmp_path):
    prof = profile(tmp_path, 'command: [x]\ntools:\n  python: {version: "3.13", with: [dev], without: [python3]}\n')
    rel = resolve(prof, lambda: SHIPPED).tools[0].release
    assert rel.chosen == ("dev",) and "usr/bin/python3" not in dict(rel.links)


# ---- the app's environment -----------------------------------------------------------------------

CALLER = {
    "HOME": "/home/u", "PATH": "/home/u/.pyenv/shims:/usr/bin:.:/home/u/.local/bin:relative:/bin/",
    "SSL_CERT_FILE": "/my/ca.pem", "NODE_EXTRA_CA_CERTS": "/my/ca.pem", "PIP_CERT": "/my/ca.pem",
    "REQUESTS_CA_BUNDLE": "/a", "CURL_CA_BUNDLE": "/b", "GIT_SSL_CAINFO": "/c", "SSL_CERT_DIR": "/d",
    "https_proxy": "http://proxy:3128", "ALL_PROXY": "socks5://p", "LD_PRELOAD": "/evil.so",
}


def test_certificates_and_proxies_pass_through_and_the_rest_is_dropped():
    env = sandboxargs.app_env(CALLER, {"PATH": DEFAULT_PATH})
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                 "PIP_CERT", "GIT_SSL_CAINFO", "https_proxy", "ALL_PROXY"):
        assert env[name] == CALLER[name]
    assert "LD_PRELOAD" not in env


def test_release_defaults_yield_to_the_caller_and_the_profile_wins():
    defaults = {"NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt", "npm_config_nodedir": "/n"}
    env = sandboxargs.app_env(CALLER, {"PATH": DEFAULT_PATH}, defaults)
    assert env["NODE_EXTRA_CA_CERTS"] == "/my/ca.pem" and env["npm_config_nodedir"] == "/n"
    env = sandboxargs.app_env({}, {"PATH": DEFAULT_PATH}, defaults)
    assert env["NODE_EXTRA_CA_CERTS"] == "/etc/ssl/certs/ca-certificates.crt"
    env = sandboxargs.app_env(CALLER, {"PATH": DEFAULT_PATH, "NODE_EXTRA_CA_CERTS": "/profile"}, defaults)
    assert env["NODE_EXTRA_CA_CERTS"] == "/profile"


@pytest.mark.parametrize("caller,tail,expected", [
    # standard dirs first; the caller's own absolute entries after, each once; "." and relative dropped
    (CALLER["PATH"], True, DEFAULT_PATH + ":/home/u/.pyenv/shims:/home/u/.local/bin"),
    ("", True, DEFAULT_PATH),
    ("/usr/bin:/bin", True, DEFAULT_PATH),
    (CALLER["PATH"], False, DEFAULT_PATH),  # the profile set PATH: exactly that
])
def test_path_keeps_standard_dirs_first_and_appends_the_callers(caller, tail, expected):
    assert sandboxargs.app_env({"PATH": caller}, {"PATH": DEFAULT_PATH}, {}, tail)["PATH"] == expected


def test_writable_prefix_per_profile_and_release_goes_on_path(tmp_path):
    prof = profile(tmp_path, 'command: [x]\ntools:\n  node: "22"\n', name="web")
    res = resolve(prof, lambda: SHIPPED)
    plan = build_plan(res, {"node": Stored("d" * 64, "/s/d", ("usr",))}, uid=1000, prefix_root="/h/.local/share/envbox-prefixes")
    env = plan.app_env({"PATH": "/home/u/bin"})
    prefix = "/h/.local/share/envbox-prefixes/web/node-22.20.0"
    assert env["npm_config_prefix"] == prefix and plan.prefixes == (prefix,)
    assert env["PATH"] == f"{DEFAULT_PATH}:{prefix}/bin:/home/u/bin"
    assert env["NODE_EXTRA_CA_CERTS"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["npm_config_globalconfig"] == "/etc/npmrc"
    cached = plan.to_cache()
    assert sandboxargs.app_env({"PATH": "/home/u/bin"}, cached["env"], cached["defaults"], cached["path_tail"]) == env


def test_every_node_release_trusts_the_host_store_and_has_a_prefix():
    for rel in SHIPPED.of("node"):
        assert dict(rel.env)["NODE_EXTRA_CA_CERTS"] == "/etc/ssl/certs/ca-certificates.crt"
        assert rel.writable_prefix == "npm_config_prefix"


# ---- python-site ---------------------------------------------------------------------------------

DEBIAN_SITE = '''
            sitepackages.append(os.path.join(prefix, "local/lib",
                                             "python%d.%d" % sys.version_info[:2],
                                             "dist-packages"))
            sitepackages.append(os.path.join(prefix, "lib",
                                             "python3",
                                             "dist-packages"))
'''


def test_python_site_points_the_layer_at_its_own_dist_packages(tmp_path):
    lib = tmp_path / "usr/lib/python3.13"
    lib.mkdir(parents=True)
    (lib / "site.py").write_text(DEBIAN_SITE)
    shared = tmp_path / "usr/lib/python3/dist-packages/_tkinter.so"
    shared.parent.mkdir(parents=True)
    shared.write_text("x")
    postbuild.python_site(tmp_path, "python3.13")
    text = (lib / "site.py").read_text()
    assert '"python3",' not in text and 'os.path.join(prefix, "lib", "python3.13", "dist-packages")' in text
    assert (lib / "dist-packages/_tkinter.so").read_text() == "x"
    assert not (tmp_path / "usr/lib/python3").exists()
    postbuild.python_host_site(tmp_path, "python3.13")
    assert "/usr/lib/python3/dist-packages" in (lib / "dist-packages" / postbuild.HOST_SITE_PTH).read_text()


def test_python_site_refuses_a_site_py_it_does_not_know(tmp_path):
    lib = tmp_path / "usr/lib/python3.13"
    lib.mkdir(parents=True)
    (lib / "site.py").write_text("# not Debian's\n")
    from envbox.core.errors import BuildError

    with pytest.raises(BuildError):
        postbuild.python_site(tmp_path, "python3.13")


def test_catalog_parts_are_validated(tmp_path):
    bad = tmp_path / "cat"
    bad.mkdir()
    (bad / "x.yaml").write_text(
        'tool: x\nreleases:\n  - version: "1"\n    source: {kind: wheel, requirement: "a==1", sha256: "' + "0" * 64 + '", map: {"a/": "usr/a/"}}\n'
        "    parts:\n      dev: {packages: [x-dev]}\n"
    )
    with pytest.raises(CatalogError) as exc:
        load_catalog((bad,), checks())
    assert "packages and skip are for deb sources" in exc.value.message


# ---- privatize: what moves, what stays, links that follow ------------------------------------


def test_privatize_moves_libraries_keeps_ruby_and_repoints_links(tmp_path):
    import os

    from envbox.sources import privatize

    multi = tmp_path / "usr/lib/x86_64-linux-gnu"
    (multi / "ruby/3.3.0").mkdir(parents=True)
    (multi / "ruby/3.3.0/rbconfig.rb").write_text("x")
    (multi / "libstdc++.so.6").write_text("lib")
    gcc = tmp_path / "usr/lib/gcc/x86_64-linux-gnu/14"
    gcc.mkdir(parents=True)
    os.symlink("../../../x86_64-linux-gnu/libstdc++.so.6", gcc / "libstdc++.so")
    os.symlink("../../../x86_64-linux-gnu/libnothere.so.1", gcc / "libother.so")
    private = tmp_path / "usr/lib/envbox/trixie"
    private.mkdir(parents=True)
    privatize._move_tree(multi, private, keep=privatize.KEEP_IN_PLACE)
    privatize._repoint_links(tmp_path, private)
    assert (multi / "ruby/3.3.0/rbconfig.rb").is_file() and not (private / "ruby").exists()
    assert (private / "libstdc++.so.6").read_text() == "lib"
    assert os.readlink(gcc / "libstdc++.so") == "../../../envbox/trixie/libstdc++.so.6"
    assert (gcc / "libstdc++.so").read_text() == "lib"
    assert os.readlink(gcc / "libother.so") == "../../../x86_64-linux-gnu/libnothere.so.1"  # not moved: left alone


def test_gcc_private_runtime_writes_specs_and_link_scripts(tmp_path):
    gcc = tmp_path / "usr/lib/gcc/x86_64-linux-gnu/14"
    gcc.mkdir(parents=True)
    private = tmp_path / "usr/lib/envbox/trixie"
    private.mkdir(parents=True)
    (private / "ld-linux-x86-64.so.2").write_text("")
    postbuild.gcc_private_runtime(tmp_path, "14", "trixie")
    specs = (gcc / "specs").read_text()
    assert "--dynamic-linker=/usr/lib/envbox/trixie/ld-linux-x86-64.so.2" in specs and "--disable-new-dtags" in specs
    assert "*lib:\n+ %{!static:%{!static-pie:-lgcc_s}}" in specs
    assert "/usr/lib/envbox/trixie/libc.so.6" in (private / "libc.so").read_text()


@pytest.mark.parametrize("version, revised", [
    ("2.7", {}), ("3.9", {}), ("3.11", {"python-own-site": 2}), ("3.13", {"python-own-site": 2}), ("3.14", {"python-own-site": 2}),
])
def test_a_revised_post_step_is_part_of_the_recipe_so_old_layers_and_locks_do_not_match(version, revised, monkeypatch):
    """A step whose output changed must change the key: with the same key, a lock's digest would
    refuse the rebuilt layer as a changed source."""
    import envbox.core.catalog as catalog

    rel = pick(SHIPPED, "python", version).select()
    assert rel.recipe().get("step_revisions", {}) == revised
    before = rel.recipe_key()
    monkeypatch.setitem(catalog.STEP_REVISIONS, "python-own-site", 3)
    assert (rel.recipe_key() != before) is bool(revised)
