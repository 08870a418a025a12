"""Mini-batches: channel statistics, the vectorised crop/flip against its loop, determinism, resume."""
from __future__ import annotations

import numpy as np
import pytest

from eca_ref.data import channel_stats, crop_flip, crop_flip_loop, iterate_batches
from eca_ref.errors import InputError, InputTypeError

MEAN = np.array([0.49, 0.48, 0.45])
STD = np.array([0.25, 0.24, 0.26])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(37, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=37)


def test_channel_stats_matches_float64_reference(data):
    x, _ = data
    ref = x.astype(np.float64) / 255.0
    for chunk in (1, 5, 2048):
        mean, std = channel_stats(x, chunk=chunk)
        assert mean.dtype == np.float32 and mean.shape == (3,) and std.dtype == np.float32
        np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-6)
        np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-6)


def test_channel_stats_rejects_floats():
    with pytest.raises(InputTypeError, match="uint8"):
        channel_stats(np.zeros((2, 3, 4, 4)))


def test_crop_flip_matches_loop(data):
    x, _ = data
    rng = np.random.default_rng(1)
    oy, ox = rng.integers(0, 9, 37), rng.integers(0, 9, 37)
    flip = rng.random(37) < 0.5
    np.testing.assert_array_equal(crop_flip(x, oy, ox, flip), crop_flip_loop(x, oy, ox, flip))


def test_crop_flip_geometry():
    x = np.arange(2 * 3 * 32 * 32, dtype=np.int64).reshape(2, 3, 32, 32).astype(np.uint8)
    four = np.full(2, 4)
    np.testing.assert_array_equal(crop_flip(x, four, four, np.zeros(2, bool)), x)  # centred crop: identity
    np.testing.assert_array_equal(crop_flip(x, four, four, np.ones(2, bool)), x[..., ::-1])  # pure flip
    out = crop_flip(x, np.zeros(2, int), np.full(2, 8), np.zeros(2, bool))  # shift: 4 rows down, 4 cols left
    assert (out[:, :, :4, :] == 0).all() and (out[:, :, :, -4:] == 0).all()  # zero padding
    np.testing.assert_array_equal(out[:, :, 4:, :28], x[:, :, :28, 4:])


def _epoch(x, y, seed, **kw):
    kw.setdefault("augment", True)
    return list(iterate_batches(x, y, 8, rng=np.random.default_rng(seed), mean=MEAN, std=STD, **kw))


def test_same_seed_same_batches_other_seed_differs(data):
    x, y = data
    a, b, c = _epoch(x, y, 7), _epoch(x, y, 7), _epoch(x, y, 8)
    assert len(a) == 5 and [len(yb) for _, yb in a] == [8, 8, 8, 8, 5]
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == np.float32 and xa.shape[1:] == (3, 32, 32) and xa.flags.c_contiguous
        assert ya.dtype == np.int64
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_resume_from_saved_generator_state(data):
    x, y = data
    rng = np.random.default_rng(3)
    _epoch_with = lambda r: list(iterate_batches(x, y, 8, rng=r, augment=True, mean=MEAN, std=STD))  # noqa: E731
    _epoch_with(rng)  # epoch 1
    state = rng.bit_generator.state
    epoch2 = _epoch_with(rng)
    resumed = np.random.default_rng(999)
    resumed.bit_generator.state = state
    for (xa, ya), (xb, yb) in zip(epoch2, _epoch_with(resumed)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_normalisation_and_order_without_randomness(data):
    x, y = data
    batches = list(iterate_batches(x, y, 10, rng=None, shuffle=False, mean=MEAN, std=STD))
    xs = np.concatenate([b[0] for b in batches])
    ref = (x / 255.0 - MEAN[None, :, None, None]) / STD[None, :, None, None]
    np.testing.assert_allclose(xs, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_shuffle_visits_every_image_once_and_drop_last(data):
    x, y = data
    ids = np.arange(37)
    seen = np.concatenate([yb for _, yb in iterate_batches(x, ids, 8, rng=np.random.default_rng(0), mean=MEAN,
                                                            std=STD)])
    assert sorted(seen.tolist()) == ids.tolist() and seen.tolist() != ids.tolist()
    kept = _epoch(x, y, 0, drop_last=True)
    assert [len(yb) for _, yb in kept] == [8, 8, 8, 8]


def test_padding_is_zero_before_normalisation():
    x = np.full((64, 3, 32, 32), 255, np.uint8)
    xb, _ = next(iterate_batches(x, np.zeros(64, int), 64, rng=np.random.default_rng(0), augment=True,
                                 mean=MEAN, std=STD))
    is_pad = np.isclose(xb, (-MEAN / STD)[None, :, None, None])  # padded pixel 0 -> (0 - mean) / std
    is_image = np.isclose(xb, ((1 - MEAN) / STD)[None, :, None, None])  # pixel 255 -> (1 - mean) / std
    assert is_pad.any() and is_image.any() and (is_pad | is_image).all()


@pytest.mark.parametrize("kwargs, err, message", [
    (dict(rng=None), InputTypeError, "rng must be a numpy.random.Generator"),
    (dict(batch_size=0), InputError, "batch_size must be >= 1"),
    (dict(mean=[0.5, 0.5]), InputError, "mean must be 3 finite numbers"),
    (dict(std=[0.5, 0.0, 0.5]), InputError, "std must be > 0"),
    (dict(labels=np.zeros(3, int)), InputError, r"labels must be integers of shape \(37,\)"),
    (dict(images=np.zeros((37, 3, 32, 32))), InputTypeError, "images must have dtype uint8"),
])
def test_bad_arguments(data, kwargs, err, message):
    x, y = data
    args = dict(images=x, labels=y, batch_size=8, rng=np.random.default_rng(0), mean=MEAN, std=STD)
    args.update(kwargs)
    with pytest.raises(err, match=message):
        iterate_batches(args.pop("images"), args.pop("labels"), args.pop("batch_size"), **args)
