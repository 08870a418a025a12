"""Checkpoints: npz without pickle + JSON, atomic, refusing corrupt and foreign files."""
import json
import os

import numpy as np
import pytest

from eca_ref.errors import CheckpointError
from eca_ref.train import checkpoint as ck


def _groups(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"stem.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                       "fc.bias": rng.standard_normal(10).astype(np.float32)},
            "buffers": {"stem.bn.running_mean": np.zeros(4, np.float32),
                        "stem.bn.num_batches_tracked": np.array(7, np.int64)}}


def _meta(step=3):
    rng = np.random.default_rng(42)
    return {"step": step, "epoch": 1, "rng": rng.bit_generator.state, "metrics": [{"test_acc": 0.5}]}


def test_roundtrip_exact(tmp_path):
    g = _groups()
    ck.save_checkpoint(tmp_path, g, _meta())
    got, meta = ck.load_checkpoint(tmp_path)
    for grp in g:
        for k, v in g[grp].items():
            assert got[grp][k].dtype == v.dtype and np.array_equal(got[grp][k], v)
    assert meta == json.loads(json.dumps(_meta()))
    # the generator state survives JSON exactly (128-bit integers)
    r = np.random.default_rng()
    r.bit_generator.state = meta["rng"]
    assert r.random() == np.random.default_rng(42).random()
    # loading through the json path works too
    assert ck.load_checkpoint(tmp_path / "checkpoint.json")[1]["step"] == 3


def test_new_checkpoint_replaces_old_arrays(tmp_path):
    ck.save_checkpoint(tmp_path, _groups(0), _meta(1))
    ck.save_checkpoint(tmp_path, _groups(1), _meta(2))
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["checkpoint-s00000002.npz"]
    assert not list(tmp_path.glob("*.tmp"))
    got, _ = ck.load_checkpoint(tmp_path)
    assert np.array_equal(got["params"]["fc.bias"], _groups(1)["params"]["fc.bias"])


def test_crash_before_commit_keeps_previous(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path, _groups(0), _meta(1))
    real = os.replace

    def fail_on_json(src, dst):
        if str(dst).endswith("checkpoint.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", fail_on_json)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path, _groups(1), _meta(2))
    monkeypatch.undo()
    got, meta = ck.load_checkpoint(tmp_path)            # still the old, complete checkpoint
    assert meta["step"] == 1 and np.array_equal(got["params"]["fc.bias"], _groups(0)["params"]["fc.bias"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_refuses_non_finite(tmp_path):
    g = _groups()
    g["params"]["fc.bias"][0] = np.nan
    with pytest.raises(CheckpointError, match="NaN"):
        ck.save_checkpoint(tmp_path, g, _meta())
    assert not (tmp_path / "checkpoint.json").exists()


def _saved(tmp_path):
    ck.save_checkpoint(tmp_path, _groups(), _meta())
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    return doc, tmp_path / doc["arrays_file"]


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        ck.load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such run directory"):
        ck.load_checkpoint(tmp_path / "nope")


def test_corrupt_json(tmp_path):
    _saved(tmp_path)
    (tmp_path / "checkpoint.json").write_text('{"format": "eca-ref.checkp')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ck.load_checkpoint(tmp_path)


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(format="torch"), "not an eca-ref checkpoint"),
    (lambda d: d.update(version=99), "newer"),
    (lambda d: d.update(version="1"), "version"),
    (lambda d: d.update(arrays_file="../../etc/passwd.npz"), "plain .npz name"),
    (lambda d: d.pop("meta"), "missing"),
    (lambda d: d["arrays"].pop("params/fc.bias"), "do not match"),
    (lambda d: d["arrays"]["params/fc.bias"].update(shape=[11]), "shape"),
])
def test_foreign_or_edited_json(tmp_path, edit, match):
    doc, _ = _saved(tmp_path)
    edit(doc)
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=match):
        ck.load_checkpoint(tmp_path)


def test_foreign_json_list(tmp_path):
    (tmp_path / "checkpoint.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not an eca-ref checkpoint"):
        ck.load_checkpoint(tmp_path)


def test_corrupt_arrays(tmp_path):
    _, npz = _saved(tmp_path)
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ck.load_checkpoint(tmp_path)
    npz.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        ck.load_checkpoint(tmp_path)


def test_pickled_object_array_is_refused_without_unpickling(tmp_path):
    """A forged checkpoint whose npz holds a pickled object array, with a matching checksum:
    it is refused by np.load(allow_pickle=False), the pickle never runs."""
    import hashlib
    doc, npz = _saved(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = np.empty(1, dtype=object)
    evil[0] = Evil()
    with open(npz, "wb") as f:
        np.savez(f, **{"params/fc.bias": evil})
    doc["arrays_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="cannot read the arrays"):
        ck.load_checkpoint(tmp_path)
    assert not marker.exists()


def test_json_safe():
    assert ck.json_safe({"a": np.float32(0.5), "b": [np.int64(3)], "c": np.arange(2)}) == {"a": 0.5, "b": [3], "c": [0, 1]}
    with pytest.raises(CheckpointError, match="non-finite"):
        ck.json_safe({"a": float("inf")})


def test_files_get_the_usual_permissions(tmp_path):
    ck.save_checkpoint(tmp_path, _groups(), _meta())
    mask = os.umask(0)
    os.umask(mask)
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p.name
