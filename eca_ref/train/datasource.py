"""Which CIFAR-10 copy a saved run uses when it is resumed, evaluated or its gates are measured.

A run records where its data was (``data.root`` in ``checkpoint.json``, the latest, and in
``config.json``, as it started; an absolute path) with fingerprints of its train and test splits. The rule, for ``resume``,
``evaluate_run`` and ``gate_statistics`` (and ``eca-ref train --resume``, ``evaluate``, ``gates``):

1. the ``data_dir`` given (``--data-dir``);
2. else the location the run recorded, if it still holds CIFAR-10 (the console says so in one line);
3. else ``$ECA_REF_DATA`` (with a line saying the recorded copy is gone), else ``~/.cache/eca-ref``
   (when the run recorded no location).

The recorded location comes before ``$ECA_REF_DATA`` because it belongs to this run, and the
environment to the shell. Whatever copy is used, a resumed run checks the fingerprint of the
training images (a mismatch is refused), and evaluate and gates check the fingerprint of the test
images when the location was not given explicitly.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eca_ref.data import find_sources
from eca_ref.data.load import ENV_VAR
from eca_ref.errors import CheckpointError, DataError
from eca_ref.train.dataset import fingerprint

__all__ = ["DataChoice", "check_test_split", "choose_data_dir", "recorded_data"]


@dataclass(frozen=True)
class DataChoice:
    root: Path | None       # None: no location given or recorded (resolve_root's rule: $ECA_REF_DATA, default)
    note: str = ""          # one line for the console, or ""
    explicit: bool = False  # given by the caller (--data-dir)


def _usable(root: Path) -> str:
    """'' if ``root`` holds a copy of CIFAR-10, else why not."""
    try:
        return "" if find_sources(root) else "holds no CIFAR-10"
    except DataError:
        return "no longer exists" if not root.exists() else "holds no CIFAR-10"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"


def recorded_data(run_dir) -> tuple[Path | None, str]:
    """The data location ``run_dir`` recorded and the file that says so (checkpoint.json, the
    latest, else config.json); ``(None, "")`` if neither records one."""
    run_dir = Path(run_dir)
    for name, keys in (("checkpoint.json", ("meta", "data", "root")), ("config.json", ("data", "root"))):
        try:
            doc = json.loads((run_dir / name).read_text(encoding="utf-8"))
            for k in keys:
                doc = doc[k]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(doc, str) and doc:
            return Path(doc).expanduser(), str(run_dir / name)
    return None, ""


def choose_data_dir(run_dir, data_dir=None) -> DataChoice:
    """The data location for the saved run in ``run_dir`` (the rule of the module docstring).
    Raises DataError when the recorded copy is gone and no ``$ECA_REF_DATA`` is set."""
    if data_dir is not None and str(data_dir) != "":
        return DataChoice(Path(data_dir).expanduser(), explicit=True)
    root, where = recorded_data(run_dir)
    if root is None:
        return DataChoice(None)
    why = _usable(root)
    if not why:
        return DataChoice(root, f"using the data recorded in {where}: {root}")
    env = os.environ.get(ENV_VAR, "")
    if env:
        return DataChoice(Path(env).expanduser(), f"the data recorded in {where} ({root}) {why}; "
                                                  f"using ${ENV_VAR}: {env}")
    raise DataError(f"{Path(run_dir)} was trained on the data in {root} (recorded in {where}), which {why}; "
                    f"point --data-dir (or ${ENV_VAR}) at that copy of CIFAR-10")


def check_test_split(run_dir, data_meta: dict, images, labels, root, note: str = "") -> None:
    """Refuse a test split whose fingerprint differs from the one ``data_meta`` recorded (runs
    written before test fingerprints were recorded pass). ``images``, ``labels``: the test split
    limited as the run's config limits it."""
    want = (data_meta or {}).get("test_fingerprint")
    if not want:
        return
    got = fingerprint(images, labels)
    if got != want:
        raise CheckpointError(f"{run_dir}: the test data in {root} is not the data this run was tested on "
                              f"({len(labels)} images, fingerprint {got}; saved: {data_meta.get('n_test')} images, "
                              f"{want}){' (' + note + ')' if note else ''}; point --data-dir at that copy, "
                              "or give it explicitly to evaluate on other data")
