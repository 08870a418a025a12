"""Faults and bad input in the data layer end in one clear line, and nothing a user had is lost.

Record counts per batch file (both formats), a full disk and a read-only folder during ``data download``
(a tiny tmpfs where this machine lets us mount one, else skipped; the same faults injected into the OS
calls always run), unreadable or vanished batch files, and refused ``--md5`` / ``--size`` values.
"""
from __future__ import annotations

import errno
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import eca_ref.data.download as download_mod
from eca_ref.cli import main
from eca_ref.data import download_cifar10, load_cifar10, make_fake_cifar10
from eca_ref.data.faults import DataIOError
from eca_ref.data.formats import PIXELS, RECORD_SIZE, check_record_counts
from eca_ref.data.load import data_info
from eca_ref.data.synthetic import py2_style_pickle, write_tar_gz
from eca_ref.errors import DataError, EcaRefError, InputError

ARCHIVE = "cifar-10-binary.tar.gz"


def _run(*args):
    return CliRunner().invoke(main, ["data", *args])


def _one_error_line(result, status):
    assert result.exit_code == status, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture
def small(tmp_path):
    """Both layouts, 4 images in every batch file: a 'full' copy once RECORDS_PER_FILE is 4."""
    return make_fake_cifar10(tmp_path / "src", n_train=20, n_test=4, archives=True)


@pytest.fixture
def four_per_file(monkeypatch):
    monkeypatch.setattr("eca_ref.data.formats.RECORDS_PER_FILE", 4)


def _copy(fake, dst: Path, fmt_folder: str) -> Path:
    shutil.copytree(fake.root / fmt_folder, dst / fmt_folder)
    return dst / fmt_folder


# --- 1. record counts: every official file holds exactly 10,000 images ----------------------------
def test_record_counts_at_the_official_size():
    full = {f"d/data_batch_{i}.bin": 10_000 for i in range(1, 6)}
    check_record_counts(full, train=list(full))
    cut = {**full, "d/data_batch_2.bin": 5_000}
    with pytest.raises(DataError, match=r"data_batch_2.bin: 5000 images, expected 10000 .*data_batch_1.bin"):
        check_record_counts(cut, train=list(cut))
    with pytest.raises(DataError, match="test_batch.bin: 5000 images, expected 10000"):
        check_record_counts({"d/test_batch.bin": 5_000}, known={"data_batch_1.bin": 10_000})
    with pytest.raises(DataError, match="20000 images, expected 10000"):
        check_record_counts({"d/test_batch.bin": 20_000})
    with pytest.raises(DataError, match="1 images, expected 3 or 4 like the other training batches"):
        check_record_counts({"a": 4, "b": 1, "c": 3}, train=["a", "b", "c"])


def test_binary_batch_cut_on_a_record_boundary(small, tmp_path, four_per_file):
    folder = _copy(small, tmp_path, "cifar-10-batches-bin")
    cut = folder / "data_batch_2.bin"
    cut.write_bytes(cut.read_bytes()[: 2 * RECORD_SIZE])  # whole records: the old size check passes
    with pytest.raises(DataError, match=r"data_batch_2.bin: 2 images, expected 4") as err:
        load_cifar10(folder, "train")
    assert "\n" not in str(err.value)
    line = [ln for ln in _run("info", "--root", str(tmp_path)).output.splitlines() if ln.startswith("unusable")]
    assert line == [f"unusable: {cut}: 2 images, expected 4 like every official batch file "
                    "(data_batch_1.bin of this copy holds 4); the file was cut short or replaced; "
                    "download or extract it again"]
    result = _run("info", "--root", str(tmp_path))
    assert result.exit_code == 1 and "no usable CIFAR-10 copy" in result.output


def test_cut_test_batch_is_found_by_load_and_info(small, tmp_path, four_per_file):
    folder = _copy(small, tmp_path, "cifar-10-batches-bin")
    test = folder / "test_batch.bin"
    test.write_bytes(test.read_bytes()[:RECORD_SIZE])
    with pytest.raises(DataError, match="test_batch.bin: 1 images, expected 4"):
        load_cifar10(folder, "test")  # the training files' sizes say the copy is full
    assert "test_batch.bin: 1 images, expected 4" in data_info(tmp_path).sources[0].error
    members = {f"{folder.name}/{p.name}": p.read_bytes() for p in folder.iterdir()}
    archive = write_tar_gz(tmp_path / ARCHIVE, members)
    with pytest.raises(DataError, match=f"{ARCHIVE}:cifar-10-batches-bin/test_batch.bin: 1 images, expected 4"):
        load_cifar10(archive, "test")  # the tar headers give the training files' sizes


def test_python_batch_with_too_few_images(small, tmp_path, four_per_file):
    folder = _copy(small, tmp_path, "cifar-10-batches-py")
    x, y = small.train[0][4:6], small.train[1][4:6]
    (folder / "data_batch_2").write_bytes(py2_style_pickle(
        {b"batch_label": b"x", b"labels": [int(v) for v in y], b"data": x.reshape(2, PIXELS), b"filenames": [b"a", b"b"]}))
    with pytest.raises(DataError, match="data_batch_2: 2 images, expected 4"):
        load_cifar10(folder, "train")
    (folder / "data_batch_2").write_bytes((small.root / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    (folder / "test_batch").write_bytes(py2_style_pickle(
        {b"batch_label": b"x", b"labels": [1, 2], b"data": x.reshape(2, PIXELS), b"filenames": [b"a", b"b"]}))
    load_cifar10(folder, "test")  # alone, a pickled test batch cannot be compared; data info compares all six
    report = data_info(folder)
    assert report.sources[0].error.endswith("test_batch: 2 images, expected 4 like every official batch file "
                                            "(data_batch_1 of this copy holds 4); the file was cut short or "
                                            "replaced; download or extract it again")


def test_python_negative_label_named(small, tmp_path):
    folder = _copy(small, tmp_path, "cifar-10-batches-py")
    (folder / "data_batch_4").write_bytes(py2_style_pickle(
        {b"labels": [0, -1, 3, 4], b"data": small.train[0][:4].reshape(4, PIXELS)}))
    with pytest.raises(DataError, match="data_batch_4: label -1 is outside 0-9"):
        load_cifar10(folder, "train")


def test_uneven_smaller_copy_is_refused(small, tmp_path):
    folder = _copy(small, tmp_path, "cifar-10-batches-bin")
    cut = folder / "data_batch_5.bin"
    cut.write_bytes(cut.read_bytes()[:RECORD_SIZE])
    with pytest.raises(DataError, match="data_batch_5.bin: 1 images, expected 3 or 4"):
        load_cifar10(folder, "train")


# --- 2. a full disk and an unwritable folder during data download ---------------------------------
@pytest.fixture
def source(tmp_path):
    fake = make_fake_cifar10(tmp_path / "mirror", n_train=50, n_test=10, formats=("binary",), archives=True)
    payload = (fake.root / ARCHIVE).read_bytes()
    return fake.root.as_uri(), payload, hashlib.md5(payload).hexdigest()


def _download_args(root, source, *extra):
    url, payload, md5 = source
    return ("download", "--root", str(root), "--url", url, "--md5", md5, "--size", str(len(payload)), "-q", *extra)


def test_disk_full_during_download(tmpfs, source):
    root = tmpfs(32 * 1024)
    line = _one_error_line(_run(*_download_args(root, source)), 1)
    assert line.startswith(f"Error: cannot write {root / ARCHIVE}: No space left on device; free ")
    assert "MB or choose another --root" in line and "the partial download was removed" in line
    assert "interrupted" not in line and list(root.iterdir()) == []


def test_disk_full_during_extract(tmpfs, source):
    root = tmpfs((len(source[1]) // 4096 + 4) * 4096)  # the archive fits, its batches do not
    line = _one_error_line(_run(*_download_args(root, source, "--extract")), 1)
    assert f"cannot write {root / 'cifar-10-batches-bin'}/" in line and "No space left on device; free " in line
    assert f"{ARCHIVE} is kept; the partial cifar-10-batches-bin/ was removed" in line
    assert [p.name for p in root.iterdir()] == [ARCHIVE]  # the verified archive stays, nothing half-done
    assert (root / ARCHIVE).read_bytes() == source[1]


def test_read_only_root_refused_before_any_transfer(tmpfs, source):
    root = tmpfs(16 * 1024, ro=True)
    url, payload, md5 = source
    for target in (root, root / "sub"):  # an existing folder, and one that cannot be created
        line = _one_error_line(_run("download", "--root", str(target), "--url", url + "/nowhere", "-q"), 1)
        assert line.startswith(f"Error: cannot write {target}: Read-only file system; choose another --root")


class _FullFile:
    """A file object whose writes fail as on a full disk (for machines where no tmpfs can be mounted)."""

    def __init__(self, f):
        self.f = f

    def write(self, block):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_disk_full_and_permission_denied_injected(tmp_path, source, monkeypatch):
    url, payload, md5 = source
    real_fdopen = download_mod.os.fdopen
    monkeypatch.setattr(download_mod.os, "fdopen", lambda fd, mode: _FullFile(real_fdopen(fd, mode)))
    with pytest.raises(DataIOError, match=f"cannot write {tmp_path / ARCHIVE}: No space left on device") as err:
        download_cifar10(tmp_path, base_url=url, md5=md5, size=len(payload), progress=False)
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, (OSError, EcaRefError))
    assert list(tmp_path.iterdir()) == [tmp_path / "mirror"]  # the partial file is gone
    monkeypatch.undo()

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.part"))
    monkeypatch.setattr(download_mod.tempfile, "mkstemp", refuse)
    line = _one_error_line(_run(*_download_args(tmp_path, source)), 1)
    assert line == (f"Error: cannot write {tmp_path}: Permission denied; make the folder writable or choose "
                    "another --root")


# --- 3 and 5. unreadable, vanished, failing files, and memory, when loading ---------------------------
@pytest.mark.parametrize("exc, words", [
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied; make it readable (chmod u+r)"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "No such file or directory; it vanished"),
    (OSError(errno.EIO, "Input/output error"), "Input/output error; the disk or network drive failed"),
    (MemoryError(), "not enough memory to load"),
])
def test_unreadable_batch_file(small, tmp_path, monkeypatch, exc, words):
    folder = _copy(small, tmp_path, "cifar-10-batches-bin")
    bad = folder / "data_batch_3.bin"
    real = Path.read_bytes

    def read_bytes(self):
        if self == bad:
            if isinstance(exc, OSError):
                exc.filename = str(self)
            raise exc
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DataIOError, match=re.escape(words)) as err:
        load_cifar10(folder, "train")  # what `eca-ref train` calls
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    result = _run("info", "--root", str(folder))
    assert result.exit_code == 1 and "unusable: " in result.output and words in result.output
    np.testing.assert_array_equal(load_cifar10(folder, "test")[1], small.test[1])  # the other split loads


def test_unreadable_file_for_real(small, tmp_path):
    folder = _copy(small, tmp_path, "cifar-10-batches-bin")
    bad = folder / "test_batch.bin"
    bad.chmod(0)
    try:
        bad.read_bytes()
        pytest.skip("this user reads files without read permission (root)")
    except PermissionError:
        pass
    with pytest.raises(DataIOError, match=f"cannot read {bad}: Permission denied"):
        load_cifar10(folder, "test")


# --- 4. --md5 and --size are refused before any transfer -------------------------------------------
@pytest.mark.parametrize("args, words", [
    (("--md5", "ZZZ"), "'--md5': must be 32 hex digits"),
    (("--md5", "0" * 31), "'--md5': must be 32 hex digits"),
    (("--size", "-5"), "'--size': must be a positive integer"),
    (("--size", "0"), "'--size': must be a positive integer"),
])
def test_bad_md5_and_size_refused(tmp_path, args, words):
    root = tmp_path / "never"
    line = _one_error_line(_run("download", "--root", str(root), "--url", "http://127.0.0.1:9/", "-q", *args), 2)
    assert words in line and not root.exists()
    with pytest.raises(InputError, match="must be"):
        download_cifar10(root, md5=args[1] if args[0] == "--md5" else None,
                         size=int(args[1]) if args[0] == "--size" else None)
    assert not root.exists()
