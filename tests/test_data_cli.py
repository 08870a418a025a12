"""``eca-ref data info`` and ``eca-ref data download`` through click's CliRunner."""
from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from eca_ref.cli import main
from eca_ref.cli_data import COMMANDS
from eca_ref.data import make_fake_cifar10

for _cmd in COMMANDS:
    main.add_command(_cmd)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=20, n_test=10, archives=True)


@pytest.fixture(scope="module")
def mirror(fake):
    """A plain static-file server on 127.0.0.1 serving the fake root (like a mirror of the official page)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(fake.root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _run(*args, env=None):
    return CliRunner().invoke(main, ["data", *args], env=env)


def test_info_on_generated_data(fake):
    result = _run("info", "--root", str(fake.root))
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("cifar-10-batches-bin/", "cifar-10-batches-py/", "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz",
                 "binary", "python", "files checked", "unofficial MD5", "is not the official archive's", " 20 ", " 10 ", "ok"):
        assert text in out
    assert f"data root: {fake.root} (from argument)" in out


def test_info_uses_env_and_data_dir_alias(fake, tmp_path):
    result = _run("info", env={"ECA_REF_DATA": str(fake.root)})
    assert result.exit_code == 0 and "from $ECA_REF_DATA" in result.output
    result = _run("info", "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and "no CIFAR-10 data found" in result.output  # nothing usable: status 1
    assert "eca-ref data download" in result.output


def test_info_reports_a_broken_copy(fake, tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for p in (fake.root / "cifar-10-batches-bin").iterdir():
        (folder / p.name).write_bytes(p.read_bytes()[:-1] if p.name == "test_batch.bin" else p.read_bytes())
    result = _run("info", "--root", str(tmp_path))
    assert result.exit_code == 1 and "unusable" in result.output  # the only copy is unusable: status 1
    assert "test_batch.bin: size" in result.output and "no usable CIFAR-10 copy" in result.output


def test_info_on_a_file_that_is_not_an_archive_exits_2(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    result = _run("info", "--root", str(tmp_path / "x.txt"))
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_download_from_mirror_then_no_op(fake, mirror, tmp_path):
    payload = (fake.root / "cifar-10-python.tar.gz").read_bytes()
    md5 = hashlib.md5(payload).hexdigest()
    args = ["download", "--root", str(tmp_path), "--format", "python", "--url", mirror, "--md5", md5,
            "--size", str(len(payload)), "-q"]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "downloaded and verified" in result.output
    assert (tmp_path / "cifar-10-python.tar.gz").read_bytes() == payload
    result = _run(*args, "--extract")
    assert result.exit_code == 0 and "nothing to do" in result.output and "extracted" in result.output
    assert (tmp_path / "cifar-10-batches-py" / "batches.meta").is_file()


def test_download_errors_exit_2_with_one_line(mirror, tmp_path):
    result = _run("download", "--root", str(tmp_path), "--url", mirror, "--md5", "0" * 32, "-q")
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "MD5" in result.output and "nothing was saved" in result.output
    assert list(tmp_path.iterdir()) == []
    result = _run("download", "--root", str(tmp_path), "--url", mirror + "nowhere/", "-q")
    assert result.exit_code == 2 and "HTTP 404" in result.output and "by hand" in result.output
