"""Mini-batches for training: shuffling, per-channel normalisation, and the standard augmentation.

The augmentation is the one used for CIFAR-10 since the ResNet paper: pad each image with 4 pixels of
zeros on every side, crop a random 32x32 window, and flip it left-right with probability 1/2. Padding
is applied to the raw image, so padded pixels are 0 *before* normalisation and become
``(0 - mean) / std`` after it, as with torchvision's ``RandomCrop(32, padding=4)`` followed by
``Normalize(mean, std)``.

Crop and flip are one gather over the whole batch: the row and column each output pixel comes from
are computed as index arrays ``(B, 32)``, the flip reverses the column indices, and one fancy-index
reads ``(B, 3, 32, 32)`` from the padded batch. :func:`crop_flip_loop` is the plain loop over images
that it is tested against.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy

from eca_ref.backend import get_xp
from eca_ref.errors import InputError, InputTypeError
from eca_ref.validation import check_int

PAD = 4  # pixels of zero padding on each side before the random crop


def _check_images(images, name: str = "images") -> numpy.ndarray:
    if not isinstance(images, numpy.ndarray):
        raise InputTypeError(f"{name} must be a numpy.ndarray of uint8 (N, 3, H, W), got {type(images).__name__}")
    if images.dtype != numpy.uint8:
        raise InputTypeError(f"{name} must have dtype uint8 (raw pixels 0-255), got {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise InputError(f"{name} must have shape (N, 3, H, W) with N >= 1, got {images.shape}")
    return images


def channel_stats(images, *, chunk: int = 2048) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Per-channel mean and standard deviation of ``images / 255`` over the whole set.

    Computed exactly in integers, ``chunk`` images at a time (sum and sum of squares of the raw bytes
    in int64), so no float copy of the set is ever made; std is the population std (ddof = 0).

    Args:
        images: uint8 (N, 3, H, W).

    Returns:
        mean, std: float32 arrays (3,), in [0, 1] units (divide pixels by 255, subtract mean, divide by std).

    Example:
        >>> x = numpy.zeros((2, 3, 4, 4), numpy.uint8); x[1] = 255
        >>> channel_stats(x)
        (array([0.5, 0.5, 0.5], dtype=float32), array([0.5, 0.5, 0.5], dtype=float32))
    """
    images = _check_images(images)
    chunk = check_int(chunk, "chunk", min_value=1)
    n, c, h, w = images.shape
    s = numpy.zeros(c, numpy.int64)  # (3,) sum of pixel values
    ss = numpy.zeros(c, numpy.int64)  # (3,) sum of squared pixel values
    for i in range(0, n, chunk):
        block = images[i:i + chunk].astype(numpy.int64)  # (chunk, 3, H, W): chunk-sized copy only
        s += block.sum(axis=(0, 2, 3))
        ss += (block * block).sum(axis=(0, 2, 3))
    count = n * h * w
    mean = s / count  # (3,) float64, 0-255 units
    var = numpy.maximum(ss / count - mean * mean, 0.0)  # (3,)
    return (mean / 255.0).astype(numpy.float32), (numpy.sqrt(var) / 255.0).astype(numpy.float32)


def crop_flip(batch: numpy.ndarray, oy: numpy.ndarray, ox: numpy.ndarray, flip: numpy.ndarray,
              pad: int = PAD) -> numpy.ndarray:
    """Random-crop-with-zero-padding and horizontal flip of a batch, vectorised.

    ``out[b, c, i, j] = P[b, c, oy[b] + i, ox[b] + j']`` where ``P`` is ``batch`` zero-padded by ``pad`` on
    each side and ``j' = W - 1 - j`` if ``flip[b]`` else ``j``.

    Args:
        batch: uint8 (B, C, H, W).
        oy, ox: int (B,), crop offsets in ``0 .. 2 * pad``; ``pad, pad`` is the identity crop.
        flip: bool (B,).

    Returns:
        uint8 (B, C, H, W).
    """
    b, c, h, w = batch.shape
    padded = numpy.zeros((b, c, h + 2 * pad, w + 2 * pad), batch.dtype)  # (B, C, H+2p, W+2p)
    padded[:, :, pad:pad + h, pad:pad + w] = batch
    rows = oy[:, None] + numpy.arange(h)  # (B, H)
    cols = ox[:, None] + numpy.arange(w)  # (B, W)
    cols = numpy.where(flip[:, None], cols[:, ::-1], cols)  # (B, W): flipped images read right to left
    bi = numpy.arange(b)[:, None, None, None]  # (B, 1, 1, 1)
    ci = numpy.arange(c)[None, :, None, None]  # (1, C, 1, 1)
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def crop_flip_loop(batch, oy, ox, flip, pad: int = PAD) -> numpy.ndarray:
    """The plain loop version of :func:`crop_flip`, one image at a time (for reading and tests)."""
    b, c, h, w = batch.shape
    out = numpy.empty_like(batch)
    for k in range(b):
        img = numpy.zeros((c, h + 2 * pad, w + 2 * pad), batch.dtype)
        img[:, pad:pad + h, pad:pad + w] = batch[k]
        crop = img[:, oy[k]:oy[k] + h, ox[k]:ox[k] + w]
        out[k] = crop[:, :, ::-1] if flip[k] else crop
    return out


def iterate_batches(images, labels, batch_size: int, *, rng: numpy.random.Generator | None,
                    shuffle: bool = True, augment: bool = False, mean, std,
                    drop_last: bool = False) -> Iterator[tuple]:
    """Mini-batches ``(x, y)`` of one epoch over ``images``, normalised and optionally augmented.

    ``x = (pixels / 255 - mean[c]) / std[c]`` per channel; with ``augment`` the pixels are first
    zero-padded by 4, randomly cropped back to H x W and flipped left-right with probability 1/2
    (padding is applied to the raw image: padded pixels are 0 before normalisation, as with
    torchvision's ``RandomCrop(32, padding=4)`` then ``Normalize``).

    Randomness comes only from ``rng``, drawn in a fixed order: the permutation (if ``shuffle``) when
    this function is called, then for each batch ``oy``, ``ox`` = ``rng.integers(0, 9, B)`` each and
    ``flip = rng.random(B) < 0.5`` (if ``augment``) when that batch is produced. The same seed gives
    the same batches, and saving ``rng.bit_generator.state`` before the call resumes an epoch exactly.

    Args:
        images: uint8 (N, 3, H, W) (e.g. from :func:`~eca_ref.data.load_cifar10`); never copied whole.
        labels: integer (N,).
        batch_size: images per batch (the last one may be smaller unless ``drop_last``).
        rng: a ``numpy.random.Generator``; required if ``shuffle`` or ``augment``, else may be None.
        shuffle: visit the images in a random order.
        augment: random crop with 4-pixel zero padding and horizontal flip.
        mean, std: per-channel statistics (3,) in [0, 1] units, e.g. from :func:`channel_stats` of
            the training set (use the training set's for the test set too).
        drop_last: skip a final batch smaller than ``batch_size``.

    Yields:
        x: float32 (B, 3, H, W), NCHW, on the current backend (:func:`eca_ref.backend.get_xp`);
        y: int64 (B,), on the current backend.

    Example:
        >>> x = numpy.zeros((5, 3, 32, 32), numpy.uint8); y = numpy.arange(5)
        >>> batches = iterate_batches(x, y, 2, rng=numpy.random.default_rng(0), augment=True,
        ...                           mean=numpy.full(3, 0.5), std=numpy.full(3, 0.25))
        >>> [tuple(xb.shape) for xb, yb in batches]
        [(2, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32)]
    """
    images = _check_images(images)
    n, c = images.shape[:2]
    labels = numpy.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise InputError(f"labels must be integers of shape ({n},) to match images, got {labels.dtype} {labels.shape}")
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    if (shuffle or augment) and not isinstance(rng, numpy.random.Generator):
        raise InputTypeError(f"rng must be a numpy.random.Generator when shuffle or augment is on, got {type(rng).__name__}")
    stats = []
    for name, v in (("mean", mean), ("std", std)):
        a = numpy.asarray(v, dtype=numpy.float64)
        if a.shape != (c,) or not numpy.isfinite(a).all():
            raise InputError(f"{name} must be {c} finite numbers (one per channel), got {v!r}")
        stats.append(a)
    if (stats[1] <= 0).any():
        raise InputError(f"std must be > 0 in every channel, got {std!r}")
    order = rng.permutation(n) if shuffle else numpy.arange(n)  # drawn now: the state after this call is fixed
    return _batches(images, labels, order, batch_size, rng, augment, stats[0], stats[1], drop_last)


def _batches(images, labels, order, batch_size, rng, augment, mean, std, drop_last):
    xp = get_xp()
    c = images.shape[1]
    scale = xp.asarray(1.0 / (255.0 * std), dtype=xp.float32).reshape(1, c, 1, 1)  # (1, C, 1, 1)
    shift = xp.asarray(-mean / std, dtype=xp.float32).reshape(1, c, 1, 1)  # (1, C, 1, 1)
    n = order.shape[0]
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]  # (B,)
        batch = images[idx]  # (B, C, H, W) uint8 copy of this batch only
        if augment:
            b = idx.shape[0]
            oy = rng.integers(0, 2 * PAD + 1, size=b)  # (B,)
            ox = rng.integers(0, 2 * PAD + 1, size=b)  # (B,)
            flip = rng.random(b) < 0.5  # (B,)
            batch = crop_flip(batch, oy, ox, flip)
        x = xp.asarray(batch).astype(xp.float32) * scale + shift  # (B, C, H, W) float32
        y = xp.asarray(labels[idx].astype(numpy.int64))  # (B,)
        yield x, y
