"""Loading CIFAR-10 from both official layouts and archives, and every check on the files."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from eca_ref.data import class_names, find_source, load_cifar10, make_fake_cifar10, resolve_root
from eca_ref.data.archive import extract_members
from eca_ref.data.formats import CLASS_NAMES, FORMATS, RECORD_SIZE
from eca_ref.data.load import data_info
from eca_ref.data.synthetic import py2_style_pickle, write_tar_gz
from eca_ref.errors import DataError


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=23, n_test=7, archives=True)


def _copy_folder(fake, tmp_path, fmt):
    src = fake.root / FORMATS[fmt].folder
    dst = tmp_path / FORMATS[fmt].folder
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


ROOTS = ["root", "cifar-10-batches-bin", "cifar-10-batches-py", "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"]


@pytest.mark.parametrize("where", ROOTS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_layout_gives_the_written_arrays(fake, where, split):
    root = fake.root if where == "root" else fake.root / where
    x, y = load_cifar10(root, split)
    want_x, want_y = getattr(fake, split)
    assert x.dtype == np.uint8 and x.shape == want_x.shape and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (want_x.shape[0],)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    assert class_names(root) == list(CLASS_NAMES)


def test_binary_record_layout_is_label_then_rgb_planes(tmp_path):
    fake = make_fake_cifar10(tmp_path, n_train=5, n_test=1, formats=("binary",))
    raw = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    assert len(raw) == RECORD_SIZE
    x, y = fake.test
    assert raw[0] == y[0]
    assert raw[1:1 + 1024] == x[0, 0].tobytes()  # red plane, row-major
    assert raw[1 + 2048:] == x[0, 2].tobytes()  # blue plane


def test_python_batches_are_official_style_pickles(fake):
    import pickle
    import pickletools

    raw = (fake.root / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    globals_used = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    obj = pickle.loads(raw, encoding="bytes")  # the standard loader agrees (trusted: we wrote it)
    assert set(obj) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert obj[b"data"].dtype == np.uint8 and obj[b"data"].shape == (5, 3072)


def test_same_seed_same_bytes(tmp_path):
    a = make_fake_cifar10(tmp_path / "a", n_train=10, n_test=5, archives=True)
    b = make_fake_cifar10(tmp_path / "b", n_train=10, n_test=5, archives=True)
    for name in ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()


def test_preference_order_and_resolution(fake, tmp_path, monkeypatch):
    assert find_source(fake.root).path.name == "cifar-10-batches-bin"
    monkeypatch.setenv("ECA_REF_DATA", str(fake.root))
    assert resolve_root() == fake.root
    assert resolve_root(tmp_path) == tmp_path
    np.testing.assert_array_equal(load_cifar10(split="test")[1], fake.test[1])
    monkeypatch.delenv("ECA_REF_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_root() == tmp_path / ".cache" / "eca-ref"


def test_nothing_found_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ECA_REF_DATA", raising=False)
    for root in (tmp_path, tmp_path / "missing", None):
        with pytest.raises(DataError, match="eca-ref data download") as err:
            load_cifar10(root)
        assert "--data-dir" in str(err.value) and "ECA_REF_DATA" in str(err.value)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder and not a .tar.gz"):
        load_cifar10(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="split must be"):
        load_cifar10(tmp_path, "val")


# --- broken files: one clear error naming the file ---------------------------------------------------
def _binary_case(fake, tmp_path, edit, name="data_batch_3.bin"):
    folder = _copy_folder(fake, tmp_path, "binary")
    edit(folder / name)
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-10]), "not a whole number of 3073-byte records"),
    (lambda p: p.write_bytes(b""), "file is empty"),
    (lambda p: p.write_bytes(b"\x0c" + p.read_bytes()[1:]), "label 12 of image 0 is outside 0-9"),
    (lambda p: p.unlink(), "missing data_batch_3.bin"),
])
def test_broken_binary_batch(fake, tmp_path, edit, message):
    folder = _binary_case(fake, tmp_path, edit)
    with pytest.raises(DataError, match=message) as err:
        load_cifar10(folder, "train")
    assert "data_batch_3.bin" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [("a\nb\n", "expected 10 class names"), (None, "missing batches.meta.txt")])
def test_broken_binary_meta(fake, tmp_path, text, message):
    def edit(p):
        p.unlink() if text is None else p.write_text(text)
    folder = _binary_case(fake, tmp_path, edit, "batches.meta.txt")
    with pytest.raises(DataError, match=message):
        load_cifar10(folder, "test")


def _batch(**change):
    d = {b"batch_label": b"x", b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8), b"filenames": [b"a", b"b"]}
    d.update({k.encode(): v for k, v in change.items()})
    return {k: v for k, v in d.items() if v is not None}


@pytest.mark.parametrize("raw, message", [
    (py2_style_pickle(_batch(data=np.zeros((2, 3071), np.uint8))), r"shape \(n, 3072\)"),
    (py2_style_pickle(_batch(labels=[1, 2, 3])), "3 labels for 2 images"),
    (py2_style_pickle(_batch(labels=[1, 10])), "label 10 of image 1 is outside 0-9"),
    (py2_style_pickle(_batch(data=None)), "missing key"),
    (py2_style_pickle([1, 2]), "expected a pickled dict"),
    (py2_style_pickle(_batch())[:-100], "truncated"),
    (b"", "file is empty"),
    (b"hello world", "not a valid pickle"),
])
def test_broken_python_batch(fake, tmp_path, raw, message):
    folder = _copy_folder(fake, tmp_path, "python")
    (folder / "test_batch").write_bytes(raw)
    with pytest.raises(DataError, match=message) as err:
        load_cifar10(folder, "test")
    assert "test_batch" in str(err.value)


def test_float_data_in_pickle_is_refused(fake, tmp_path):
    import pickle

    folder = _copy_folder(fake, tmp_path, "python")
    # A protocol-2 pickle written by Python 3 spells bytes through _codecs.encode: refused too.
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072)), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refused to load"):
        load_cifar10(folder, "test")


# --- archives ------------------------------------------------------------------------------------
def _members(fake, fmt="binary"):
    f = FORMATS[fmt]
    return {f"{f.folder}/{p.name}": p.read_bytes() for p in (fake.root / f.folder).iterdir()}


@pytest.mark.parametrize("bad", ["/etc/evil", "cifar-10-batches-bin/../../evil", "../evil"])
def test_archive_with_unsafe_member_is_rejected(fake, tmp_path, bad):
    members = _members(fake)
    members[bad] = b"x"
    archive = write_tar_gz(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(DataError, match="unsafe archive") as err:
        load_cifar10(archive, "test")
    assert bad in str(err.value)
    with pytest.raises(DataError, match="unsafe archive"):
        extract_members(archive, "cifar-10-batches-bin", FORMATS["binary"].expected_files(), tmp_path)
    assert not (tmp_path / "cifar-10-batches-bin").exists() and not (tmp_path.parent / "evil").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-binary.tar.gz"]


def test_archive_symlink_member_is_refused(fake, tmp_path):
    members = _members(fake)
    del members["cifar-10-batches-bin/test_batch.bin"]
    link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = write_tar_gz(tmp_path / "a.tar.gz", members, extra=[link])
    with pytest.raises(DataError, match="not a regular file"):
        load_cifar10(archive, "test")


def test_archive_missing_member_and_corrupt_archive(fake, tmp_path):
    members = _members(fake)
    del members["cifar-10-batches-bin/data_batch_2.bin"]
    archive = write_tar_gz(tmp_path / "a.tar.gz", members)
    with pytest.raises(DataError, match="archive lacks cifar-10-batches-bin/data_batch_2.bin"):
        load_cifar10(archive, "train")
    load_cifar10(archive, "test")  # the test split is still complete
    good = (fake.root / "cifar-10-binary.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.tar.gz: not a readable .tar.gz archive or truncated"):
        load_cifar10(tmp_path / "cut.tar.gz", "train")
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="empty.tar.gz"):
        load_cifar10(tmp_path / "empty.tar.gz", "test")
    write_tar_gz(tmp_path / "other.tar.gz", {"photos/a.jpg": b"x"})
    with pytest.raises(DataError, match="holds no CIFAR-10 batches"):
        load_cifar10(tmp_path / "other.tar.gz", "test")


def test_extract_members(fake, tmp_path):
    folder = extract_members(fake.root / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                             FORMATS["python"].expected_files(), tmp_path)
    np.testing.assert_array_equal(load_cifar10(folder, "train")[0], fake.train[0])
    with pytest.raises(DataError, match="already exists"):
        extract_members(fake.root / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                        FORMATS["python"].expected_files(), tmp_path)


def test_data_info(fake, tmp_path):
    report = data_info(fake.root)
    assert [s.source.path.name for s in report.sources] == ROOTS[1:]
    assert all(s.ok and s.counts == {"train": 23, "test": 7} for s in report.sources)
    assert report.sources[2].official is False and len(report.sources[2].md5) == 32
    assert [s.verified for s in report.sources] == ["files checked"] * 2 + ["unofficial MD5"] * 2
    _binary_case(fake, tmp_path, lambda p: p.write_bytes(b"12"))
    bad = data_info(tmp_path).sources[0]
    assert not bad.ok and "data_batch_3.bin" in bad.error
    assert data_info(tmp_path / "nowhere").sources == []


REAL = os.environ.get("ECA_REF_CIFAR10_REAL")  # a folder holding both layouts and both official archives


@pytest.mark.skipif(not REAL, reason="set ECA_REF_CIFAR10_REAL to a real CIFAR-10 folder with both archives")
def test_real_copy_all_layouts_identical():
    root = Path(REAL)
    for split, n in (("train", 50000), ("test", 10000)):
        ref_x, ref_y = load_cifar10(root / "cifar-10-batches-bin", split)
        assert ref_x.shape == (n, 3, 32, 32) and np.bincount(ref_y).tolist() == [n // 10] * 10
        for other in ROOTS[2:]:
            x, y = load_cifar10(root / other, split)
            assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y), other
