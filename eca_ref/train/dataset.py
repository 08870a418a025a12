"""The data of a run: the (limited) train and test splits, their normalisation, and a fingerprint
of the training images (a resumed run refuses other data)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np  # host-side data: uint8 images and their statistics

from eca_ref.data import channel_stats, load_cifar10, resolve_root
from eca_ref.train.config import TrainConfig

__all__ = ["TrainData", "fingerprint", "load_data"]


@dataclass
class TrainData:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    fingerprint: str
    root: Path
    test_fingerprint: str = ""

    def meta(self) -> dict:
        """What config.json and checkpoint.json record of the data (``root`` absolute)."""
        return {"root": os.path.abspath(self.root), "n_train": int(len(self.train_y)), "n_test": int(len(self.test_y)),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "train_fingerprint": self.fingerprint,
                "test_fingerprint": self.test_fingerprint}


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """16 hex digits of SHA-256 over the shape, the labels and the images."""
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(memoryview(np.ascontiguousarray(labels)))
    h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return h.hexdigest()[:16]


def load_data(cfg: TrainConfig, data_dir=None, *, mean=None, std=None) -> TrainData:
    """The (limited) train and test splits, and the per-channel statistics of the train split."""
    root = resolve_root(data_dir)
    train_x, train_y = load_cifar10(root, split="train")
    test_x, test_y = load_cifar10(root, split="test")
    if cfg.limit is not None:
        train_x, train_y = train_x[: cfg.limit], train_y[: cfg.limit]
        test_x, test_y = test_x[: cfg.limit], test_y[: cfg.limit]
    if mean is None or std is None:
        mean, std = channel_stats(train_x)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return TrainData(train_x, train_y, test_x, test_y, mean, std, fingerprint(train_x, train_y), Path(root),
                     fingerprint(test_x, test_y))
