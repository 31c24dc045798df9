"""More tools, the same conflict (network): two versions of Java, GCC, Ruby, Go, Python 3.14 /
Node 24, each at its standard path (/usr/bin/java, gcc, ruby, go...), running side by side in
two launches at once, each compiling or running a real program; the host's own versions are
unaffected.

CI runs one pair per family (about 4 minutes of building on a warm download cache). The
remaining releases (Java 17, GCC 12, Ruby 3.1) run with `-m matrix` (README "Tests").
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess

import pytest

from conftest import shared_cache

pytestmark = [pytest.mark.network, pytest.mark.slow]

HELLO_CPP = """#include <iostream>
#include <vector>
#include <numeric>
int main() { std::vector<int> v{1, 2, 3, 4}; std::cout << "sum=" << std::accumulate(v.begin(), v.end(), 0) << " gcc=" << __GNUC__ << std::endl; }
"""
HELLO_JAVA = 'public class Hello { public static void main(String[] a) { System.out.println("java " + System.getProperty("java.specification.version") + " " + java.util.List.of(1, 2).size()); } }\n'
# TLS with the JDK's cacerts = the host's keystore (ca-certificates-java), through this machine's
# TLS-inspecting proxy (its CA is in the host's store), with no -D option or variable.
TLS_JAVA = ('public class Tls { public static void main(String[] a) throws Exception { System.out.println("tls " + '
            '((java.net.HttpURLConnection) java.net.URI.create(a[0]).toURL().openConnection()).getResponseCode()); } }\n')
HELLO_GO = 'package main\n\nimport (\n\t"fmt"\n\t"runtime"\n\t"sort"\n)\n\nfunc main() {\n\ts := []int{3, 1, 2}\n\tsort.Ints(s)\n\tfmt.Println("go", runtime.Version(), s)\n}\n'
# A gem built and installed offline (rubygems.org is out of reach here): `gem install` writes to
# the release's writable GEM_HOME, its command runs by name, bundler resolves the Gemfile from it.
GEMSPEC = """Gem::Specification.new do |s|
  s.name = "hello"
  s.version = "1.0.0"
  s.summary = "envbox test gem"
  s.authors = ["envbox"]
  s.license = "MIT"
  s.files = ["lib/hello.rb", "bin/hello"]
  s.executables = ["hello"]
end
"""
GEM_LIB = 'module Hello\n  def self.greet\n    "hello from ruby #{RUBY_VERSION.split(".")[0, 2].join(".")}"\n  end\nend\n'
GEM_BIN = '#!/usr/bin/env ruby\nrequire "hello"\nputs Hello.greet\n'
GEMFILE = 'source "https://rubygems.org"\ngem "hello"\n'

# family -> (files to write in the work dir, script, expected output lines with {v} = major)
FAMILIES = {
    "gcc": (
        {"hello.cpp": HELLO_CPP, "t.c": "int main(void) { return 0; }\n"},
        "cd $W && g++ -O2 -o hello-$V hello.cpp && ./hello-$V && cc -o t-$V t.c && ./t-$V && readlink -f /usr/bin/gcc",
        ["sum=10 gcc={v}", "/usr/bin/x86_64-linux-gnu-gcc-{v}"],
    ),
    "java": (
        {"Hello.java": HELLO_JAVA, "Tls.java": TLS_JAVA},
        "cd $W && javac -J-XX:-UsePerfData -d out-$V Hello.java Tls.java && java -XX:-UsePerfData -cp out-$V Hello && readlink -f /usr/bin/java"
        " && java -XX:-UsePerfData -cp out-$V Tls https://pypi.org/simple/six/",
        ["java {v} 2", "/usr/lib/jvm/java-{v}-openjdk-amd64/bin/java", "tls 200"],
    ),
    "ruby": (
        {"Gemfile": GEMFILE, "hello.gemspec": GEMSPEC, "lib/hello.rb": GEM_LIB, "bin/hello": GEM_BIN},
        "cd $W && mkdir -p r-$V && cp -r Gemfile hello.gemspec lib bin r-$V/ && cd r-$V"
        " && gem build hello.gemspec >/dev/null 2>&1 && gem install --local --no-document ./hello-1.0.0.gem >/dev/null 2>&1"
        " && hello && bundle install --local --quiet >/dev/null 2>&1 && bundle exec hello"
        " && ruby -rjson -ropenssl -e 'puts JSON.generate([1])' && command -v gem",
        ["hello from ruby {v}", "hello from ruby {v}", "[1]", "/usr/bin/gem"],
    ),
    "go": (
        {"go.mod": "module example.com/hello\n\ngo 1.19\n", "main.go": HELLO_GO},
        # offline: no proxy, no toolchain download; a module with only the standard library.
        "cd $W && GOPROXY=off GOFLAGS=-mod=mod go build -o hello-$V . && ./hello-$V | cut -d' ' -f1,2 | sed 's/\\.[0-9]*$//'",
        ["go go{v}"],
    ),
}

# family -> (script, expected) run in a later launch of each release: what it installed stays.
# Lines are fnmatch patterns: the gem's command is in the writable GEM_HOME of that profile and
# release (envbox-prefixes/PROFILE/ruby-X.Y.Z/bin).
AGAIN = {"ruby": ("command -v hello && hello", ["*/envbox-prefixes/{p}/ruby-{v}.*/bin/hello", "hello from ruby {v}"])}

PAIRS = [("gcc", "10", "14"), ("java", "11", "21"), ("ruby", "2.7", "3.3"), ("go", "1.19", "1.24")]
MATRIX = [("gcc", "12"), ("java", "17"), ("ruby", "3.1")]


def run_side_by_side(env, tool, old, new):
    shared_cache(env)
    files, script, expected = FAMILIES[tool]
    work = env.home / "work"
    work.mkdir(exist_ok=True)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    env.give(work)
    for version in (old, new):
        env.write_profile(f"{tool}-{version}".replace(".", "-"), f'command: [sh, -c]\ntools:\n  {tool}: "{version}"\n')
        result = env.envbox("build", f"{tool}-{version}".replace(".", "-"), timeout=900)
        assert result.returncode == 0, result.stderr
    gate = env.home / "gate"
    probe = script.replace("$W", str(work))
    first = env.envbox_popen(
        "launch", f"{tool}-{old}".replace(".", "-"), "--",
        f"V={old}; {probe}; while [ ! -e {gate} ]; do sleep 0.05; done",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        second = env.envbox("launch", f"{tool}-{new}".replace(".", "-"), "--", f"V={new}; {probe}", timeout=600)
        assert first.poll() is None, "both launches run at the same time"
    finally:
        gate.touch()
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert out.splitlines() == [line.format(v=old) for line in expected], out
    assert second.stdout.splitlines() == [line.format(v=new) for line in expected], second.stdout
    if tool in AGAIN:
        again, lines = AGAIN[tool]
        for version in (old, new):
            profile = f"{tool}-{version}".replace(".", "-")
            result = env.envbox("launch", profile, "--", again, timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
            got = result.stdout.splitlines()
            want = [x.format(p=profile, v=version) for x in lines]
            assert len(got) == len(want) and all(map(fnmatch.fnmatchcase, got, want)), (got, want)


@pytest.mark.parametrize("tool,old,new", PAIRS, ids=[p[0] for p in PAIRS])
def test_two_versions_side_by_side(root_env, tool, old, new):
    run_side_by_side(root_env, tool, old, new)
    # The host's own versions are untouched.
    host = {"gcc": (["gcc", "-dumpversion"], "12"), "java": (["java", "-version"], "17.")}.get(tool)
    if host and shutil.which(host[0][0]):
        result = subprocess.run(host[0], capture_output=True, text=True)
        assert host[1] in result.stdout + result.stderr


def test_python_314_and_node_24_the_newest(root_env):
    env = root_env
    shared_cache(env)
    env.write_profile("newest", 'command: [sh, -c]\ntools:\n  node: "24"\n  python: "3.14"\n')
    result = env.envbox("launch", "newest", "--",
                        "python3 -c 'import sys, ssl, sqlite3; print(sys.version.split()[0])'; node -p process.version;"
                        " node -e 'require(\"https\").get(\"https://registry.npmjs.org/\", r => { console.log(\"tls\", r.statusCode); process.exit(0) })'",
                        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["3.14.10", "v24.19.0", "tls 200"]


@pytest.mark.matrix
@pytest.mark.parametrize("tool,version", MATRIX, ids=[f"{t}-{v}" for t, v in MATRIX])
def test_matrix_other_releases(root_env, tool, version):
    """Opt-in (-m matrix): the releases CI leaves out, each against the newest of its family."""
    newest = {"gcc": "14", "java": "21", "ruby": "3.3"}[tool]
    run_side_by_side(root_env, tool, version, newest)
