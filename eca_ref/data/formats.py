"""The two official CIFAR-10 layouts: names, sizes, checksums, and the parsers of one batch file.

CIFAR-10 is published in two formats (https://www.cs.toronto.edu/~kriz/cifar.html):

* **binary** (``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/``): ``data_batch_1.bin`` ..
  ``data_batch_5.bin`` and ``test_batch.bin`` hold records of ``1 + 3072 = 3073`` bytes each: one label
  byte (0-9), then the 1024 red, 1024 green and 1024 blue pixel bytes of a 32x32 image, each plane in
  row-major order. ``batches.meta.txt`` lists the ten class names, one per line.
* **python** (``cifar-10-python.tar.gz`` -> ``cifar-10-batches-py/``): ``data_batch_1`` ..
  ``data_batch_5`` and ``test_batch`` are Python 2 pickles (protocol 2) of a dict with bytes keys:
  ``b"data"`` a uint8 array (n, 3072) in the same R, G, B plane order, ``b"labels"`` a list of n ints,
  ``b"batch_label"`` and ``b"filenames"``. ``batches.meta`` holds ``b"label_names"``. They are read
  with :func:`eca_ref.data.unpickle.restricted_loads`, never with :func:`pickle.load`.

Every parser here takes the raw bytes of one file and the name to put in error messages, checks
everything it can, and raises one :class:`~eca_ref.errors.DataError` naming the file and what was
wrong.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy

from eca_ref.data.unpickle import restricted_loads
from eca_ref.errors import DataError

# --- the official files ----------------------------------------------------------------------------
OFFICIAL_BASE_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"

HEIGHT = WIDTH = 32
CHANNELS = 3
PIXELS = CHANNELS * HEIGHT * WIDTH  # 3072 bytes per image: R plane, G plane, B plane
RECORD_SIZE = 1 + PIXELS  # 3073 bytes per binary record: label byte + pixels
NUM_CLASSES = 10
RECORDS_PER_FILE = 10_000  # images in every official batch file, data_batch_1..5 and test_batch
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
SPLITS = ("train", "test")

#: The class names as the official meta files list them (used only for messages and fake data;
#: :func:`eca_ref.data.class_names` reads them from the meta file).
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class Format(NamedTuple):
    """One official layout: its archive, folder and file names, and the archive's checksum."""

    name: str  # "binary" or "python"
    archive: str  # file name of the official .tar.gz
    folder: str  # the folder the archive holds
    suffix: str  # suffix of each batch file
    meta: str  # name of the meta file
    md5: str  # MD5 of the official archive
    size: int  # size in bytes of the official archive

    def batch_files(self, split: str) -> tuple[str, ...]:
        names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
        return tuple(n + self.suffix for n in names)

    def expected_files(self) -> tuple[str, ...]:
        return self.batch_files("train") + self.batch_files("test") + (self.meta,)


FORMATS = {
    "binary": Format("binary", "cifar-10-binary.tar.gz", "cifar-10-batches-bin", ".bin", "batches.meta.txt",
                     md5="c32a1d4ab5d03f1284b67883e8d87530", size=170_052_171),
    "python": Format("python", "cifar-10-python.tar.gz", "cifar-10-batches-py", "", "batches.meta",
                     md5="c58f30108f718f92721af3b95e74349a", size=170_498_071),
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DataError(f"format must be one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


# --- parsers of one file ---------------------------------------------------------------------------
def _check_labels(labels: numpy.ndarray, where: str) -> None:
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        bad = int(numpy.argmax(labels >= NUM_CLASSES))
        raise DataError(f"{where}: label {int(labels[bad])} of image {bad} is outside 0-{NUM_CLASSES - 1}")


def parse_binary_batch(raw: bytes, where: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Parse one ``*.bin`` batch: ``n`` records of 3073 bytes.

    Args:
        raw: the file's bytes (any buffer).
        where: the file's name or path, for error messages.

    Returns:
        images: uint8 (n, 3, 32, 32), a read-only view into ``raw`` (copy it to keep it),
        labels: uint8 (n,).
    """
    size = len(raw)
    if size == 0:
        raise DataError(f"{where}: file is empty (expected records of {RECORD_SIZE} bytes: 1 label + 3072 pixels)")
    if size % RECORD_SIZE:
        raise DataError(f"{where}: size {size} bytes is not a whole number of {RECORD_SIZE}-byte records "
                        f"(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 batch")
    records = numpy.frombuffer(raw, dtype=numpy.uint8).reshape(-1, RECORD_SIZE)  # (n, 3073)
    labels = records[:, 0]  # (n,)
    _check_labels(labels, where)
    images = records[:, 1:].reshape(-1, CHANNELS, HEIGHT, WIDTH)  # (n, 3, 32, 32) view
    return images, labels


def parse_binary_meta(raw: bytes, where: str) -> list[str]:
    """``batches.meta.txt``: the ten class names, one a line (blank lines ignored)."""
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{where}: not a text file of class names (non-ASCII bytes)") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != NUM_CLASSES:
        raise DataError(f"{where}: expected {NUM_CLASSES} class names, one a line, got {len(names)}")
    return names


def _unpickle_dict(raw: bytes, where: str, keys: tuple[bytes, ...]) -> dict:
    if len(raw) == 0:
        raise DataError(f"{where}: file is empty (expected a pickled CIFAR-10 batch)")
    obj = restricted_loads(raw, where)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    missing = [k.decode() for k in keys if k not in obj]
    if missing:
        found = ", ".join(sorted(repr(k) for k in obj)[:8])
        raise DataError(f"{where}: missing key(s) {', '.join(missing)} (found {found or 'none'}); "
                        "not a CIFAR-10 python batch")
    return obj


def parse_python_batch(raw: bytes, where: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Parse one pickled batch (``data_batch_1`` ..): ``{b"data": uint8 (n, 3072), b"labels": [n ints]}``.

    Returns:
        images: uint8 (n, 3, 32, 32) (a view of the unpickled array), labels: int64 (n,).
    """
    obj = _unpickle_dict(raw, where, (b"data", b"labels"))
    data = obj[b"data"]
    if not isinstance(data, numpy.ndarray):
        raise DataError(f"{where}: b'data' must be a numpy array, got {type(data).__name__}")
    if data.dtype != numpy.uint8:
        raise DataError(f"{where}: b'data' must have dtype uint8, got {data.dtype}")
    if data.ndim != 2 or data.shape[1] != PIXELS or data.shape[0] == 0:
        raise DataError(f"{where}: b'data' must have shape (n, {PIXELS}) with n >= 1, got {data.shape}")
    labels_obj = obj[b"labels"]
    if not isinstance(labels_obj, list) or not all(type(v) is int for v in labels_obj):
        raise DataError(f"{where}: b'labels' must be a list of ints")
    if len(labels_obj) != data.shape[0]:
        raise DataError(f"{where}: {len(labels_obj)} labels for {data.shape[0]} images")
    labels = numpy.asarray(labels_obj, dtype=numpy.int64)  # (n,)
    if labels.size and int(labels.min()) < 0:
        raise DataError(f"{where}: label {int(labels.min())} is outside 0-{NUM_CLASSES - 1}")
    _check_labels(labels, where)
    return data.reshape(-1, CHANNELS, HEIGHT, WIDTH), labels


def parse_python_meta(raw: bytes, where: str) -> list[str]:
    """``batches.meta``: a pickled dict whose ``b"label_names"`` lists the ten class names."""
    obj = _unpickle_dict(raw, where, (b"label_names",))
    names = obj[b"label_names"]
    if (not isinstance(names, list) or len(names) != NUM_CLASSES
            or not all(isinstance(n, (bytes, str)) and n for n in names)):
        raise DataError(f"{where}: b'label_names' must be a list of {NUM_CLASSES} names")
    return [n.decode("ascii", "replace") if isinstance(n, bytes) else n for n in names]


def check_record_counts(counts: dict[str, int], train=(), known: dict[str, int] | None = None) -> None:
    """Check the number of images of each batch file read: ``counts`` is ``{where: n}``.

    Every official batch file holds exactly :data:`RECORDS_PER_FILE` images. A copy in which any file
    (read now, or sized cheaply in ``known``) holds that many is a full copy, and then every file must;
    more than that is never accepted. A smaller copy (generated test data, a subset) must split its
    training batches (the keys in ``train``) evenly: no batch more than one image short of the largest.
    A file cut on a record boundary is thus reported with what was expected and what was found.
    """
    full = RECORDS_PER_FILE
    cut = "the file was cut short or replaced; download or extract it again"
    for where, n in counts.items():
        if n > full:
            raise DataError(f"{where}: {n} images, expected {full} (every official CIFAR-10 batch file holds "
                            f"exactly {full}); not a CIFAR-10 batch")
    ref = next((w for w, n in [*counts.items(), *(known or {}).items()] if n == full), None)
    if ref is not None:
        for where, n in counts.items():
            if n != full:
                raise DataError(f"{where}: {n} images, expected {full} like every official batch file "
                                f"({ref.rsplit('/', 1)[-1]} of this copy holds {full}); {cut}")
        return
    sizes = {w: counts[w] for w in train if w in counts}
    top = max(sizes.values(), default=0)
    for where, n in sizes.items():
        if n < top - 1:
            raise DataError(f"{where}: {n} images, expected {top - 1} or {top} like the other training batches "
                            f"of this copy (a copy smaller than the official one splits them evenly); {cut}")


PARSERS = {
    "binary": (parse_binary_batch, parse_binary_meta),
    "python": (parse_python_batch, parse_python_meta),
}
