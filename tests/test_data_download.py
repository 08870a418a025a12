"""The download code path against a local HTTP server on 127.0.0.1 (never the internet)."""
from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from eca_ref.data import download_cifar10, load_cifar10, make_fake_cifar10
from eca_ref.errors import DataError

ARCHIVE = "cifar-10-binary.tar.gz"


class _Handler(BaseHTTPRequestHandler):
    """/good/<archive>: the archive; /drop/<archive>: half of it, then the connection closes;
    /other/<archive>: different bytes of the same length; anything else: 404."""

    payload = b""

    def do_GET(self):  # noqa: N802
        mode, _, name = self.path.strip("/").partition("/")
        if name != ARCHIVE or mode not in ("good", "drop", "other"):
            self.send_error(404)
            return
        body = self.payload if mode != "other" else bytes(len(self.payload))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fake = make_fake_cifar10(tmp_path_factory.mktemp("src"), n_train=10, n_test=5, formats=("binary",),
                             archives=True)
    payload = (fake.root / ARCHIVE).read_bytes()
    handler = type("Handler", (_Handler,), {"payload": payload})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield url, payload, hashlib.md5(payload).hexdigest(), fake
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _leftovers(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_verifies_and_second_call_is_a_no_op(server, tmp_path):
    url, payload, md5, fake = server
    root = tmp_path / "data"
    result = download_cifar10(root, base_url=f"{url}/good/", md5=md5, size=len(payload), progress=False,
                              timeout=5)
    assert result.downloaded and result.path == root / ARCHIVE and result.path.read_bytes() == payload
    assert _leftovers(root) == [ARCHIVE]
    mtime = result.path.stat().st_mtime_ns
    again = download_cifar10(root, base_url=f"{url}/drop", md5=md5, size=len(payload), progress=False, timeout=5)
    assert not again.downloaded and result.path.stat().st_mtime_ns == mtime  # the server was not even asked
    x, y = load_cifar10(root, "test")  # the loader reads the archive as it is
    np.testing.assert_array_equal(x, fake.test[0])


def test_download_with_progress_and_extract(server, tmp_path):
    url, payload, md5, fake = server
    result = download_cifar10(tmp_path, base_url=f"{url}/good", md5=md5, progress=True, timeout=5, extract=True)
    assert result.extracted == tmp_path / "cifar-10-batches-bin"
    np.testing.assert_array_equal(load_cifar10(result.extracted, "train")[1], fake.train[1])


def test_md5_mismatch_leaves_nothing(server, tmp_path):
    url, payload, md5, _ = server
    with pytest.raises(DataError, match=f"has MD5 .* expected {md5}; nothing was saved"):
        download_cifar10(tmp_path, base_url=f"{url}/other", md5=md5, size=len(payload), progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_size_mismatch_leaves_nothing(server, tmp_path):
    url, payload, md5, _ = server
    with pytest.raises(DataError, match=f"expected {len(payload) + 1}"):
        download_cifar10(tmp_path, base_url=f"{url}/good", md5=md5, size=len(payload) + 1, progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_dropped_connection_leaves_no_file_and_no_temp_file(server, tmp_path):
    url, payload, md5, _ = server
    with pytest.raises(DataError, match="(cut off|interrupted) after .*nothing was saved") as err:
        download_cifar10(tmp_path, base_url=f"{url}/drop", md5=md5, size=len(payload), progress=False, timeout=5)
    assert "place it by hand" in str(err.value)
    assert _leftovers(tmp_path) == []


def test_http_error_and_network_failure_say_how_to_place_the_archive(server, tmp_path):
    url, _, md5, _ = server
    with pytest.raises(DataError, match="HTTP 404"):
        download_cifar10(tmp_path, base_url=f"{url}/missing", md5=md5, progress=False, timeout=5)
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=f"could not download http://127.0.0.1:{port}/{ARCHIVE}") as err:
        download_cifar10(tmp_path, base_url=f"http://127.0.0.1:{port}", progress=False, timeout=5)
    msg = str(err.value)
    assert "place it by hand" in msg and "cs.toronto.edu/~kriz/cifar.html" in msg
    assert str(tmp_path / ARCHIVE) in msg and "c32a1d4ab5d03f1284b67883e8d87530" in msg
    assert _leftovers(tmp_path) == []


def test_existing_file_that_fails_the_check_is_not_trusted(server, tmp_path):
    url, payload, md5, _ = server
    (tmp_path / ARCHIVE).write_bytes(b"not it")
    with pytest.raises(DataError, match="exists but its MD5 is .*delete it to download again"):
        download_cifar10(tmp_path, base_url=f"{url}/good", md5=md5, progress=False, timeout=5)
    with pytest.raises(DataError, match="exists but has 6 bytes, expected 170052171"):
        download_cifar10(tmp_path, progress=False, timeout=5)  # official defaults: size checked first
    with pytest.raises(DataError, match="format must be one of binary, python"):
        download_cifar10(tmp_path, format="jpeg")
