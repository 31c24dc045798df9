"""debclosure: control stanzas, dpkg version order, relations, and the closure over a host."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from envbox.sources import debclosure as dc
from envbox.core.errors import BuildError

# ---- dpkg version comparison ----------------------------------------------------------------

# (a, b, expected sign of compare_versions(a, b)); checked against dpkg itself below.
VERSION_PAIRS = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.10", "1.9", 1),
    ("1.0-1", "1.0-2", -1),
    ("1.0", "1.0-0", 0),  # a missing revision compares like "0"
    ("1:1.0", "2.0", 1),  # epoch wins
    ("0:1.0", "1.0", 0),
    ("1.0~rc1", "1.0", -1),  # tilde sorts before everything, even the end
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0~", "1.0", -1),
    ("1.0a", "1.0", 1),  # letters sort after the end
    ("1.0a", "1.0+", -1),  # letters sort before non-letters
    ("1.0+", "1.0.", -1),  # '+' (43) before '.' (46)
    ("1.0-1", "1.0+1-1", -1),
    ("2.36-9+deb12u14", "2.41-12+deb13u5", -1),
    ("2.36-9+deb12u14", "2.36-9+deb12u9", 1),
    ("1:9.2p1-2+deb12u6", "1:9.4p1", -1),
    ("3.11.2-6+deb12u6", "3.11.2-6+deb12u9", -1),
    ("3.5.9-1~deb13u1", "3.5.9-1", -1),
    ("3.9.2-1", "3.9.1-0~", 1),
    ("3.11.2-1+b1", "3.10", 1),
    ("1:1.2.13.dfsg-1", "1:1.1.4", 1),
    ("1.5.4+dfsg2-5", "1.5.5", -1),
    ("2.7.18-8+deb11u1", "2.7.18-8", 1),
    ("5.3.28+dfsg2-1", "5.3.28+dfsg2-9", -1),
    ("1.3.0-2", "1.3.0-10", -1),
    ("007", "7", 0),  # leading zeros do not count
    ("1.002", "1.2", 0),
    ("2:0.1", "1:9.9", 1),
    ("1.0-1ubuntu1", "1.0-1", 1),
    ("10.0.0", "10.0.0~", 1),
]


@pytest.mark.parametrize("a,b,expected", VERSION_PAIRS)
def test_compare_versions(a, b, expected):
    got = dc.compare_versions(a, b)
    assert (got > 0) - (got < 0) == expected
    back = dc.compare_versions(b, a)
    assert (back > 0) - (back < 0) == -expected


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@pytest.mark.parametrize("a,b,expected", VERSION_PAIRS)
def test_compare_versions_agrees_with_dpkg(a, b, expected):
    def dpkg(op: str) -> bool:
        return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0

    assert dpkg("lt") == (expected < 0)
    assert dpkg("eq") == (expected == 0)
    assert dpkg("gt") == (expected > 0)


@pytest.mark.parametrize(
    "version,op,wanted,ok",
    [
        ("2.36-9", ">=", "2.38", False),
        ("2.41-12", ">=", "2.38", True),
        ("3.9.2-1", "<<", "3.10", True),
        ("3.10", "<<", "3.10", False),
        ("3.10", "<=", "3.10", True),
        ("3.10", "<", "3.10", True),  # obsolete '<' means <=
        ("3.10", ">", "3.10", True),  # obsolete '>' means >=
        ("1.0", "=", "1.0-0", True),
        ("1.0", ">>", "1.0", False),
    ],
)
def test_version_satisfies(version, op, wanted, ok):
    assert dc.version_satisfies(version, op, wanted) is ok


# ---- control format and relations -----------------------------------------------------------

STATUS_SAMPLE = """\
Package: libc6
Status: install ok installed
Priority: optional
Version: 2.36-9+deb12u14
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 This package includes shared versions of the standard C library.

package: oldpkg
status: deinstall ok config-files
version: 1.0
architecture: amd64

# a comment line between stanzas
Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u14
Architecture: i386
Multi-Arch: same

Package: media-types
Status: install ok installed
Version: 10.0.0
Architecture: all
Multi-Arch: foreign
Breaks: mime-support (<< 3.65)
"""


def test_parse_stanzas_joins_continuations_and_lowercases_keys():
    stanzas = list(dc.parse_stanzas(STATUS_SAMPLE))
    assert [s["package"] for s in stanzas] == ["libc6", "oldpkg", "libc6", "media-types"]
    assert stanzas[0]["description"].splitlines() == [
        "GNU C Library: Shared libraries",
        "Contains the standard libraries that are used by nearly all programs on",
        "the system.",
        ".",
        "This package includes shared versions of the standard C library.",
    ]
    assert stanzas[1]["status"] == "deinstall ok config-files"


def test_parse_stanzas_keep_drops_other_fields():
    first = next(dc.parse_stanzas(STATUS_SAMPLE, frozenset({"package", "version"})))
    assert first == {"package": "libc6", "version": "2.36-9+deb12u14"}


def test_read_status_keeps_installed_packages_of_the_architecture():
    host = dc.read_packages(STATUS_SAMPLE, arch="amd64", installed_only=True)
    assert [(p.name, p.architecture) for p in host] == [("libc6", "amd64"), ("media-types", "all")]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("libc6 (>= 2.38)", [[("libc6", "", ">=", "2.38")]]),
        ("python3:any (>= 3.9.1-0~), python3:any (<< 3.10)", [[("python3", "any", ">=", "3.9.1-0~")], [("python3", "any", "<<", "3.10")]]),
        ("debconf (>= 0.5) | debconf-2.0", [[("debconf", "", ">=", "0.5"), ("debconf-2.0", "", "", "")]]),
        ("libstdc++6 (>= 5.2)", [[("libstdc++6", "", ">=", "5.2")]]),
        ("foo [!amd64], bar [amd64 i386]", [[("bar", "", "", "")]]),
        ("foo [i386] | baz", [[("baz", "", "", "")]]),
        ("foo <!nocheck>, python3.9-dev:native(>=3.9)", [[("foo", "", "", "")], [("python3.9-dev", "native", ">=", "3.9")]]),
        ("a,\n b", [[("a", "", "", "")], [("b", "", "", "")]]),
    ],
)
def test_parse_relations(text, expected):
    groups = dc.parse_relations(text, "amd64")
    assert [[(r.name, r.arch, r.op, r.version) for r in g] for g in groups] == expected


def test_parse_relations_refuses_garbage():
    with pytest.raises(BuildError, match="cannot parse package relation"):
        dc.parse_relations("libc6 (>= 2.38", "amd64")


# ---- the closure, on real stanzas (trimmed to the fields that matter) ------------------------

HOST = """\
Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u14
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
Architecture: amd64
Multi-Arch: same
Provides: libz1
Depends: libc6 (>= 2.14)

Package: openssh-client
Status: install ok installed
Version: 1:9.2p1-2+deb12u6
Architecture: amd64
Multi-Arch: foreign
Provides: ssh-client
Depends: libc6 (>= 2.36), libssl3 (>= 3.0.16), zlib1g (>= 1:1.1.4)

Package: libssl3
Status: install ok installed
Version: 3.0.19-1~deb12u2
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.34)

Package: libexpat1
Status: install ok installed
Version: 2.5.0-1+deb12u1
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.36)

Package: media-types
Status: install ok installed
Version: 10.0.0
Architecture: all
Multi-Arch: foreign
Breaks: mime-support (<< 3.65)

Package: python3
Status: install ok installed
Version: 3.11.2-1+b1
Architecture: amd64
Multi-Arch: allowed
Provides: python3-profiler, python3-supported-max (= 3.11), python3-supported-min (= 3.11)
Depends: python3.11 (>= 3.11.2-1~)

Package: debconf
Status: install ok installed
Version: 1.5.82
Architecture: all
Multi-Arch: foreign
Provides: debconf-2.0
"""

BULLSEYE = """\
Package: python2.7
Version: 2.7.18-8+deb11u1
Architecture: amd64
Multi-Arch: allowed
Depends: python2.7-minimal (= 2.7.18-8+deb11u1), libpython2.7-stdlib (= 2.7.18-8+deb11u1), mime-support
Conflicts: python-profiler (<= 2.7.1-2)
Filename: pool/main/p/python2.7/python2.7_2.7.18-8+deb11u1_amd64.deb
Size: 310988
SHA256: 0b0b34b069d41970af75a4fe5b9012465e480fc0a0488ec16554d6299fe0b46e

Package: python2.7-minimal
Version: 2.7.18-8+deb11u1
Architecture: amd64
Pre-Depends: libc6 (>= 2.29)
Depends: libpython2.7-minimal (= 2.7.18-8+deb11u1), zlib1g (>= 1:1.2.0)
Filename: pool/main/p/python2.7/python2.7-minimal_2.7.18-8+deb11u1_amd64.deb
Size: 1301072
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: libpython2.7-minimal
Version: 2.7.18-8+deb11u1
Architecture: amd64
Depends: libc6 (>= 2.14)
Filename: pool/main/p/python2.7/libpython2.7-minimal_2.7.18-8+deb11u1_amd64.deb
Size: 397032
SHA256: 2222222222222222222222222222222222222222222222222222222222222222

Package: libpython2.7-stdlib
Version: 2.7.18-8+deb11u1
Architecture: amd64
Multi-Arch: same
Provides: python-argparse, python2.7-argparse, python2.7-ctypes
Depends: libpython2.7-minimal (= 2.7.18-8+deb11u1), libssl1.1 (>= 1.1.1), mime-support, libc6 (>= 2.28), libexpat1 (>= 2.1~beta3), libffi7 (>= 3.3~20180313)
Filename: pool/main/p/python2.7/libpython2.7-stdlib_2.7.18-8+deb11u1_amd64.deb
Size: 1863736
SHA256: 3e627d6d8992b853e000b8a4c09dda613fb767cdb711a2eac20ebc9f867b593c

Package: libssl1.1
Version: 1.1.1w-0+deb11u1
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.25), debconf (>= 0.5) | debconf-2.0
Filename: pool/main/o/openssl/libssl1.1_1.1.1w-0+deb11u1_amd64.deb
Size: 1565664
SHA256: aadf8b4b197335645b230c2839b4517aa444fd2e8f434e5438c48a18857988f7

Package: libssl1.1
Version: 1.1.1w-0+deb11u8
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.25), debconf (>= 0.5) | debconf-2.0
Filename: pool/updates/main/o/openssl/libssl1.1_1.1.1w-0+deb11u8_amd64.deb
Size: 1565888
SHA256: dcc68a543de6cb955a57077b66dcdb15f61d1e31e072f2c6cc4082c37da1b00d

Package: libffi7
Version: 3.3-6
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.14)
Filename: pool/main/libf/libffi/libffi7_3.3-6_amd64.deb
Size: 23096
SHA256: 30ca89bfddae5fa6e0a2a044f22b6e50cd17c4bc6bc850c579819aeab7101f0f

Package: mime-support
Version: 3.66
Architecture: all
Multi-Arch: foreign
Depends: mailcap, media-types
Filename: pool/main/m/mime-support/mime-support_3.66_all.deb
Size: 10916
SHA256: b964e671e6c47674879a3e54130b6737e8760fbd3da6afcc015faa174af98ba0

Package: mailcap
Version: 3.69
Architecture: all
Filename: pool/main/m/mailcap/mailcap_3.69_all.deb
Size: 31708
SHA256: 4444444444444444444444444444444444444444444444444444444444444444

Package: python3-distutils
Version: 3.9.2-1
Architecture: all
Multi-Arch: foreign
Provides: python3.9-distutils
Depends: python3:any (>= 3.9.1-0~), python3:any (<< 3.10), python3-lib2to3 (= 3.9.2-1)
Filename: pool/main/p/python3-stdlib-extensions/python3-distutils_3.9.2-1_all.deb
Size: 142952
SHA256: 05ec4080e0f05ba6b1c339d89c97f6343919be450b66cf4cfb215f54dcb85e58

Package: python3-lib2to3
Version: 3.9.2-1
Architecture: all
Multi-Arch: foreign
Provides: python3.9-lib2to3
Depends: python3:any (>= 3.9.1-0~), python3:any (<< 3.10)
Filename: pool/main/p/python3-stdlib-extensions/python3-lib2to3_3.9.2-1_all.deb
Size: 77772
SHA256: 802c198e5dd0b5af85a6937e426a85d616680785e8d18148fac451281a83a9a9

Package: python3
Version: 3.9.2-3
Architecture: amd64
Multi-Arch: allowed
Depends: python3.9 (>= 3.9.2-0~)
Filename: pool/main/p/python3-defaults/python3_3.9.2-3_amd64.deb
Size: 37764
SHA256: 5555555555555555555555555555555555555555555555555555555555555555

Package: python3.9
Version: 3.9.2-1+deb11u3
Architecture: amd64
Multi-Arch: allowed
Depends: libc6 (>= 2.14)
Filename: pool/updates/main/p/python3.9/python3.9_3.9.2-1+deb11u3_amd64.deb
Size: 471892
SHA256: 5656565656565656565656565656565656565656565656565656565656565656
"""

TRIXIE = """\
Package: python3.13-minimal
Version: 3.13.5-2+deb13u5
Architecture: amd64
Multi-Arch: allowed
Pre-Depends: libc6 (>= 2.38)
Depends: libexpat1 (>= 2.6.0), zlib1g (>= 1:1.2.0)
Conflicts: binfmt-support (<< 1.1.2)
Filename: pool/main/p/python3.13/python3.13-minimal_3.13.5-2+deb13u5_amd64.deb
Size: 2224552
SHA256: c1fda9e7b1bf15b2fa75a238d8a8710e142fe14c722fc650c5fc614f078c9073

Package: libc6
Version: 2.41-12+deb13u5
Architecture: amd64
Multi-Arch: same
Breaks: base-files (<< 13.3~), locales (<< 2.41), nscd (<< 2.41)
Filename: pool/main/g/glibc/libc6_2.41-12+deb13u5_amd64.deb
Size: 2850108
SHA256: b59b0625cd1a791375d40dab23a4d5d3d0641e3d0a773501becdc3725b7f99cf

Package: libexpat1
Version: 2.9.0-1~deb13u1
Architecture: amd64
Multi-Arch: same
Pre-Depends: libc6 (>= 2.36)
Filename: pool/updates/main/e/expat/libexpat1_2.9.0-1~deb13u1_amd64.deb
Size: 125744
SHA256: feff874772cae904ae4d24e917b35664952bec4b4ae9100a4edda5a7fa746832

Package: libssl3t64
Version: 3.5.9-1~deb13u1
Architecture: amd64
Multi-Arch: same
Provides: libssl3 (= 3.5.9-1~deb13u1)
Depends: libc6 (>= 2.38), zlib1g (>= 1:1.1.4)
Breaks: libssl3 (<< 3.5.9-1~deb13u1), openssh-client (<< 1:9.4p1), openssh-server (<< 1:9.4p1)
Filename: pool/main/o/openssl/libssl3t64_3.5.9-1~deb13u1_amd64.deb
Size: 2464736
SHA256: ffefb9af363e0e4592251b2533eb06453c8e470f7772e40263c4b2129251a6d5

Package: needs-ssl
Version: 1.0
Architecture: amd64
Depends: libssl3 (>= 3.4.0)
Filename: pool/main/n/needs-ssl/needs-ssl_1.0_amd64.deb
Size: 1000
SHA256: 6666666666666666666666666666666666666666666666666666666666666666

Package: needs-profiler
Version: 1.0
Architecture: all
Depends: python3-profiler, libz1
Filename: pool/main/n/needs-profiler/needs-profiler_1.0_all.deb
Size: 1000
SHA256: 7777777777777777777777777777777777777777777777777777777777777777

Package: needs-nothing-there
Version: 1.0
Architecture: all
Depends: libc6 (>= 9.0) | no-such-package
Filename: pool/main/n/needs-nothing-there/needs-nothing-there_1.0_all.deb
Size: 1000
SHA256: 8888888888888888888888888888888888888888888888888888888888888888

Package: needs-i386
Version: 1.0
Architecture: amd64
Depends: libfoo:i386
Filename: pool/main/n/needs-i386/needs-i386_1.0_amd64.deb
Size: 1000
SHA256: 9999999999999999999999999999999999999999999999999999999999999999

Package: old-mime
Version: 3.64
Architecture: all
Provides: mime-support (= 3.64)
Filename: pool/main/o/old-mime/old-mime_3.64_all.deb
Size: 1000
SHA256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa

Package: zlib1g
Version: 1:1.2.0-1
Architecture: amd64
Filename: pool/main/z/zlib/zlib1g_1.2.0-1_amd64.deb
Size: 1000
SHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
"""


def closure(index: str, requested, **kw) -> dc.Closure:
    host = dc.read_packages(kw.pop("host", HOST), arch="amd64", installed_only=True)
    packages = dc.read_packages(index, arch="amd64", origin="http://deb.debian.org/debian")
    return dc.resolve_closure(requested, packages, host, arch="amd64", suite="the test suite", **kw)


@pytest.mark.parametrize(
    "index,requested,kw,expected",
    [
        # python2.7 from bullseye: the host's libc6, zlib1g, libexpat1, debconf satisfy their
        # relations; libssl1.1 and libffi7 are missing; mime-support pulls mailcap (media-types is there).
        (
            BULLSEYE,
            ["python2.7"],
            {},
            ["python2.7", "python2.7-minimal", "libpython2.7-stdlib", "mime-support", "libpython2.7-minimal", "libssl1.1", "libffi7", "mailcap"],
        ),
        # skip: mime-support is never taken (and so neither is mailcap).
        (BULLSEYE, ["python2.7"], {"skip": ["mime-support"]}, ["python2.7", "python2.7-minimal", "libpython2.7-stdlib", "libpython2.7-minimal", "libssl1.1", "libffi7"]),
        # python3:any (<< 3.10) is not satisfied by the host's 3.11: python3 would be taken...
        (BULLSEYE, ["python3-distutils"], {}, ["python3-distutils", "python3", "python3-lib2to3", "python3.9"]),
        # ...unless it is skipped.
        (BULLSEYE, ["python3-distutils"], {"skip": ["python3"]}, ["python3-distutils", "python3-lib2to3"]),
        # force: libssl3t64 is taken although nothing here needs it.
        (TRIXIE, ["python3.13-minimal"], {"force": ["libssl3t64"]}, ["python3.13-minimal", "libssl3t64", "libc6", "libexpat1"]),
        # trixie's python3.13-minimal needs libc6 (>= 2.38) and libexpat1 (>= 2.6.0): both newer than the host's.
        (TRIXIE, ["python3.13-minimal"], {}, ["python3.13-minimal", "libc6", "libexpat1"]),
        # libssl3 (>= 3.4.0): the host's libssl3 is too old; libssl3t64 provides libssl3 (= 3.5.9-1~deb13u1).
        (TRIXIE, ["needs-ssl"], {}, ["needs-ssl", "libssl3t64", "libc6"]),
        # Unversioned dependencies on virtual packages the host provides (python3-profiler, libz1).
        (TRIXIE, ["needs-profiler"], {}, ["needs-profiler"]),
        # A requested package is taken even when the host has it, at the suite's version.
        (TRIXIE, ["zlib1g"], {}, ["zlib1g"]),
    ],
)
def test_closure_packages(index, requested, kw, expected):
    result = closure(index, requested, **kw)
    assert [p.name for p in result.packages] == expected


def test_closure_records_versions_files_and_reasons():
    result = closure(BULLSEYE, ["python2.7"], skip=["mime-support"])
    by_name = {p.name: p for p in result.packages}
    ssl = by_name["libssl1.1"]
    # Of the two libssl1.1 versions (bullseye, bullseye-security), the highest is taken.
    assert ssl.version == "1.1.1w-0+deb11u8"
    assert ssl.filename == "pool/updates/main/o/openssl/libssl1.1_1.1.1w-0+deb11u8_amd64.deb"
    assert ssl.deb_name == "libssl1.1_1.1.1w-0+deb11u8_amd64.deb"
    assert ssl.size == 1565888
    assert ssl.sha256 == "dcc68a543de6cb955a57077b66dcdb15f61d1e31e072f2c6cc4082c37da1b00d"
    assert ssl.origin == "http://deb.debian.org/debian"
    assert ssl.reason == "libpython2.7-stdlib: libssl1.1 (>= 1.1.1)"
    assert by_name["python2.7"].reason == "requested"
    assert by_name["python2.7-minimal"].reason == "python2.7: python2.7-minimal (= 2.7.18-8+deb11u1)"
    assert result.size == sum(p.size for p in result.packages)
    assert any("skipped mime-support" in w for w in result.warnings)


def test_closure_records_the_host_version_it_shadows():
    result = closure(TRIXIE, ["python3.13-minimal"])
    by_name = {p.name: p for p in result.packages}
    assert by_name["libc6"].host_version == "2.36-9+deb12u14"
    assert by_name["libc6"].reason == "python3.13-minimal: libc6 (>= 2.38)"
    assert by_name["python3.13-minimal"].host_version == ""


def test_closure_warns_about_breaks_against_the_host():
    result = closure(TRIXIE, ["needs-ssl"])
    assert "libssl3t64 Breaks openssh-client (<< 1:9.4p1): the host has openssh-client 1:9.2p1-2+deb12u6" in result.warnings
    assert "libssl3t64 Breaks libssl3 (<< 3.5.9-1~deb13u1): the host has libssl3 3.0.19-1~deb12u2" in result.warnings
    # libc6 Breaks base-files/locales, but this host has neither installed: no warning.
    assert not any(w.startswith("libc6 Breaks") for w in result.warnings)


def test_closure_warns_when_a_host_package_breaks_the_layer():
    # The host's media-types Breaks mime-support (<< 3.65): a layer with mime-support 3.64 hits it.
    index = BULLSEYE.replace("Version: 3.66\nArchitecture: all\nMulti-Arch: foreign", "Version: 3.64\nArchitecture: all\nMulti-Arch: foreign")
    result = closure(index, ["mime-support"])
    assert "host package media-types Breaks mime-support (<< 3.65): the layer has mime-support 3.64" in result.warnings


def test_closure_warns_about_downgrades():
    result = closure(TRIXIE, ["zlib1g"])
    assert result.warnings == ("zlib1g 1:1.2.0-1 is older than the host's 1:1.2.13.dfsg-1, which it shadows",)


@pytest.mark.parametrize(
    "index,requested,message",
    [
        (TRIXIE, ["needs-nothing-there"], "needs-nothing-there 1.0 depends on libc6 (>= 9.0) | no-such-package, which neither the host nor the test suite can satisfy"),
        (TRIXIE, ["needs-i386"], "needs-i386 1.0 depends on libfoo:i386"),
        (TRIXIE, ["python3.14"], "package python3.14 is not in the test suite"),
    ],
)
def test_closure_errors(index, requested, message):
    with pytest.raises(BuildError) as info:
        closure(index, requested)
    assert message in info.value.message
    assert info.value.hint


def test_closure_with_the_real_host_status():
    """The live dpkg status parses, and packages it has are not pulled again."""
    import pathlib

    status = pathlib.Path("/var/lib/dpkg/status")
    if not status.exists():
        pytest.skip("no dpkg status on this host")
    host_text = status.read_text(errors="replace")
    names = {p.name for p in dc.read_packages(host_text, arch="amd64", installed_only=True)}
    if "libc6" not in names:
        pytest.skip("this host is not an amd64 Debian with libc6")
    if not {"python3", "zlib1g"} <= names:
        pytest.skip("this host has no python3 or zlib1g")
    # python3 provides python3-profiler and zlib1g provides libz1 on the real host too.
    result = closure(TRIXIE, ["needs-profiler"], host=host_text)
    assert [p.name for p in result.packages] == ["needs-profiler"]
