"""Downloads into the sha256 cache, against a real local HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

from envbox.sources import fetch
from envbox.core.errors import BuildError

BODY = os.urandom(3 << 20) + b"end"
SHA = hashlib.sha256(BODY).hexdigest()
SRI = "sha512-" + base64.b64encode(hashlib.sha512(BODY).digest()).decode()


class Server:
    """routes: path -> (status, headers, body). Every request is recorded in `hits`."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                status, headers, body = outer.routes.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for key, value in headers.items():
                    if value is not None:
                        self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(fetch.LOOPBACK_SWITCH, "1")
    s = Server()
    s.routes["/file.bin"] = (200, {}, BODY)
    yield s
    s.stop()


def cache_files(downloads: Path) -> list[str]:
    return sorted(str(p.relative_to(downloads)) for p in downloads.rglob("*") if p.is_file())


def test_download_lands_in_the_cache_by_sha256(server, tmp_path):
    reports = []
    got = fetch.fetch(f"{server.url}/file.bin", tmp_path, sha256=SHA, progress=lambda done, total: reports.append((done, total)))
    assert got.path == tmp_path / "sha256" / SHA
    assert got.path.read_bytes() == BODY and got.size == len(BODY) and got.sha256 == SHA
    assert got.name == "file.bin" and got.url == f"{server.url}/file.bin"
    assert reports[-1] == (len(BODY), len(BODY))
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert os.listdir(tmp_path / "tmp") == []


def test_cached_file_is_reused_without_the_network(server, tmp_path):
    url = f"{server.url}/file.bin"
    fetch.fetch(url, tmp_path, sha256=SHA)
    server.stop()
    with pytest.raises(BuildError, match="download of .* failed"):
        fetch.fetch(url, tmp_path / "other-cache", sha256=SHA)  # the server is really gone
    again = fetch.fetch(url, tmp_path, sha256=SHA)
    assert again.path.read_bytes() == BODY and again.name == "file.bin"
    assert server.hits == ["/file.bin"]


def test_npm_integrity_finds_the_cached_file_offline(server, tmp_path):
    url = f"{server.url}/file.bin"
    first = fetch.fetch(url, tmp_path, integrity=SRI)
    assert first.sha256 == SHA
    server.stop()
    again = fetch.fetch(url, tmp_path, integrity=SRI)
    assert again.path == first.path and server.hits == ["/file.bin"]


def test_sha256_mismatch_names_url_and_digests_and_caches_nothing(server, tmp_path):
    wrong = "0" * 64
    url = f"{server.url}/file.bin"
    with pytest.raises(BuildError) as err:
        fetch.fetch(url, tmp_path, sha256=wrong)
    assert url in err.value.message and wrong in err.value.message and SHA in err.value.message
    assert cache_files(tmp_path) == []


def test_integrity_mismatch_caches_nothing(server, tmp_path):
    other = "sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    with pytest.raises(BuildError, match="integrity does not match"):
        fetch.fetch(f"{server.url}/file.bin", tmp_path, integrity=other)
    assert cache_files(tmp_path) == []


def test_a_damaged_cache_entry_is_downloaded_again(server, tmp_path):
    url = f"{server.url}/file.bin"
    got = fetch.fetch(url, tmp_path, sha256=SHA)
    got.path.write_bytes(b"bit rot")
    again = fetch.fetch(url, tmp_path, sha256=SHA)
    assert again.path.read_bytes() == BODY and server.hits == ["/file.bin", "/file.bin"]


def test_redirect_to_plain_http_is_refused(server, tmp_path):
    server.routes["/moved"] = (302, {"Location": "http://example.invalid/file.bin"}, b"")
    with pytest.raises(BuildError, match="not https"):
        fetch.fetch(f"{server.url}/moved", tmp_path)
    assert cache_files(tmp_path) == []


def test_redirect_is_followed(server, tmp_path):
    server.routes["/moved"] = (301, {"Location": f"{server.url}/file.bin"}, b"")
    assert fetch.fetch(f"{server.url}/moved", tmp_path, sha256=SHA).sha256 == SHA
    assert server.hits == ["/moved", "/file.bin"]


def test_http_404_and_plain_http_without_the_test_switch(server, tmp_path, monkeypatch):
    with pytest.raises(BuildError, match="HTTP 404"):
        fetch.fetch(f"{server.url}/missing", tmp_path)
    monkeypatch.delenv(fetch.LOOPBACK_SWITCH)
    with pytest.raises(BuildError, match="must be https"):
        fetch.fetch(f"{server.url}/file.bin", tmp_path)


def test_size_cap_with_and_without_content_length(server, tmp_path):
    with pytest.raises(BuildError, match="limit"):
        fetch.fetch(f"{server.url}/file.bin", tmp_path, max_bytes=1 << 20)
    server.routes["/nolength"] = (200, {"Content-Length": None, "Connection": "close"}, BODY)
    with pytest.raises(BuildError, match="limit"):
        fetch.fetch(f"{server.url}/nolength", tmp_path, max_bytes=1 << 20)
    assert cache_files(tmp_path) == []


def test_response_cut_short(server, tmp_path):
    server.routes["/short"] = (200, {"Content-Length": str(len(BODY) + 100), "Connection": "close"}, BODY)
    with pytest.raises(BuildError):
        fetch.fetch(f"{server.url}/short", tmp_path)
    assert cache_files(tmp_path) == []


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.LOOPBACK_SWITCH, "1")
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(BuildError, match="failed"):
            fetch.fetch(f"http://127.0.0.1:{port}/x", tmp_path, timeout=0.5)


def test_local_file_is_copied_into_the_cache(tmp_path):
    src = tmp_path / "tool.tar.gz"
    src.write_bytes(BODY)
    got = fetch.fetch(str(src), tmp_path / "cache", sha256=SHA)
    assert got.path.read_bytes() == BODY and got.name == "tool.tar.gz"
    src.unlink()
    assert fetch.fetch(str(src), tmp_path / "cache", sha256=SHA).path == got.path
    with pytest.raises(BuildError, match="cannot read"):
        fetch.fetch(str(src), tmp_path / "cache2")


def test_fetch_json(server):
    server.routes["/pkg/json"] = (200, {}, b'{"urls": []}')
    assert fetch.fetch_json(f"{server.url}/pkg/json") == {"urls": []}
    assert fetch.fetch_json(f"{server.url}/nothing", missing_ok=True) is None
    with pytest.raises(BuildError, match="not found"):
        fetch.fetch_json(f"{server.url}/nothing")


@pytest.mark.parametrize(
    "url,ok",
    [
        ("https://pypi.org/pypi/x/json", True),
        ("/srv/archives/tool.tar.xz", True),
        ("http://pypi.org/x", False),
        ("ftp://example.org/x", False),
        ("file:///etc/passwd", False),
        ("relative/path.tar", False),
        ("https:///nohost", False),
        ("", False),
    ],
)
def test_check_url(url, ok, monkeypatch):
    monkeypatch.delenv(fetch.LOOPBACK_SWITCH, raising=False)
    if ok:
        fetch.check_url(url)
    else:
        with pytest.raises(ValueError):
            fetch.check_url(url)


@pytest.mark.parametrize(
    "sri,want",
    [
        (SRI, ("sha512", hashlib.sha512(BODY).hexdigest())),
        ("sha1-abc= " + SRI, ("sha512", hashlib.sha512(BODY).hexdigest())),
        ("sha256-" + base64.b64encode(bytes.fromhex(SHA)).decode(), ("sha256", SHA)),
        ("sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=", ValueError),
        ("sha512-notbase64!!", ValueError),
        ("sha512-AAAA", ValueError),
        (None, ValueError),
    ],
)
def test_parse_integrity(sri, want):
    if want is ValueError:
        with pytest.raises(ValueError):
            fetch.parse_integrity(sri)
    else:
        assert fetch.parse_integrity(sri) == want
