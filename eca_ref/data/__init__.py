"""CIFAR-10: both official formats, the archives, a verified download, and mini-batches.

Public API::

    resolve_root(root=None) -> Path                     # root, else $ECA_REF_DATA, else ~/.cache/eca-ref
    load_cifar10(root=None, split="train") -> (images uint8 (N, 3, 32, 32), labels int64 (N,))
    class_names(root=None) -> list[str]
    channel_stats(images) -> (mean (3,), std (3,))      # float32, of pixels / 255
    iterate_batches(images, labels, batch_size, *, rng, shuffle=True, augment=False, mean, std,
                    drop_last=False)                    # -> (x float32 (B, 3, 32, 32), y int64 (B,))
    download_cifar10(root=None, *, format="binary", ...) -> Path of the verified archive
    data_info(root=None) -> DataInfo                    # what is there, format, checksum, counts
    make_fake_cifar10(root, *, n_train=100, n_test=50, seed=0, formats=(...), archives=False)

See docs/data.md.
"""
from eca_ref.data.batches import channel_stats, crop_flip, crop_flip_loop, iterate_batches
from eca_ref.data.download import download_cifar10
from eca_ref.data.formats import CLASS_NAMES, FORMATS, OFFICIAL_BASE_URL
from eca_ref.data.load import class_names, data_info, find_source, find_sources, load_cifar10, resolve_root
from eca_ref.data.synthetic import FakeCifar10, make_fake_cifar10

__all__ = [
    "CLASS_NAMES", "FORMATS", "OFFICIAL_BASE_URL", "FakeCifar10", "channel_stats", "class_names", "crop_flip",
    "crop_flip_loop", "data_info", "download_cifar10", "find_source", "find_sources", "iterate_batches",
    "load_cifar10", "make_fake_cifar10", "resolve_root",
]
