"""Download against a real HTTP server on 127.0.0.1: good, corrupt, truncated, 404, offline."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparkvision.data.download import download
from sparkvision.data.ingest import locate_cifar as locate
from sparkvision.data.sources.cifar import CIFAR10
from sparkvision.errors import DownloadError

ARCHIVE = b"pretend this is a gzip archive " * 1000
RELEASE = dataclasses.replace(CIFAR10, tgz_md5=hashlib.md5(ARCHIVE).hexdigest())


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        _Handler.hits.append(self.path)
        if self.path == "/good.tar.gz":
            body, length = ARCHIVE, len(ARCHIVE)
        elif self.path == "/corrupt.tar.gz":
            body = bytearray(ARCHIVE)
            body[100] ^= 0xFF
            body, length = bytes(body), len(ARCHIVE)
        elif self.path == "/truncated.tar.gz":
            body, length = ARCHIVE[: len(ARCHIVE) // 3], len(ARCHIVE)  # promises more than it sends
        else:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name != RELEASE.filename] if folder.exists() else []


def test_good_download_is_verified_and_then_reused(server, tmp_path):
    path = download(RELEASE, tmp_path, url=f"{server}/good.tar.gz", progress=False)
    assert path.read_bytes() == ARCHIVE and _leftovers(tmp_path) == []
    hits = len(_Handler.hits)
    assert download(RELEASE, tmp_path, url=f"{server}/good.tar.gz", progress=False) == path
    assert len(_Handler.hits) == hits  # reused: no second request


@pytest.mark.parametrize("name, message", [
    ("corrupt", "is corrupt: md5"),
    ("truncated", "stopped after 10333 of 31000 bytes"),
    ("missing", "answered 404"),
])
def test_bad_downloads_fail_and_leave_nothing(server, tmp_path, name, message):
    with pytest.raises(DownloadError, match=message):
        download(RELEASE, tmp_path, url=f"{server}/{name}.tar.gz", progress=False)
    assert not (tmp_path / RELEASE.filename).exists() and _leftovers(tmp_path) == []


def test_a_url_urllib_cannot_take_is_a_download_error(tmp_path):
    # A local path given as the mirror: urllib's "unknown url type", said as a download error.
    with pytest.raises(DownloadError, match="Could not download /no/such/mirror.tar.gz .*unknown url type"):
        download(RELEASE, tmp_path, url="/no/such/mirror.tar.gz", progress=False)
    assert _leftovers(tmp_path) == []


def test_corrupt_file_in_cache_is_never_used(server, tmp_path):
    (tmp_path / RELEASE.filename).write_bytes(b"half a file")
    path = download(RELEASE, tmp_path, url=f"{server}/good.tar.gz", progress=False)
    assert path.read_bytes() == ARCHIVE


def test_offline_fails_at_once_saying_how_to_pass_data(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SPARKVISION_CIFAR_URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    with pytest.raises(DownloadError, match="offline.*--data PATH") as info:
        locate("auto", tmp_path, progress=False)
    assert "(from SPARKVISION_CIFAR_URL; unset it to use https://" in str(info.value)  # a mirror set long ago


def test_a_404_says_where_the_url_came_from_and_not_to_download_again(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKVISION_CIFAR_URL", f"{server}/missing.tar.gz")
    with pytest.raises(DownloadError, match="answered 404") as info:
        download(RELEASE, tmp_path, progress=False)
    said = str(info.value)
    assert "from SPARKVISION_CIFAR_URL" in said and "--data auto" not in said and RELEASE.filename in said


def test_the_hint_names_the_releases_own_files():
    from sparkvision.data.sources.cifar import CIFAR100, how_to_pass

    assert "cifar-100-python (or cifar-100-binary)" in how_to_pass(CIFAR100)
    assert "cifar-100-python.tar.gz" in how_to_pass(CIFAR100) and "cifar-10-" not in how_to_pass(CIFAR100)
