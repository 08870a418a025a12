"""What determines a run: :class:`TrainConfig`, the named recipes (PRESETS) and how a preset and
explicitly given options combine (:func:`config_from_preset`, the one rule the CLI uses too)::

    from eca_ref.train import config_from_preset
    cfg = config_from_preset("d20", seed=1)      # the preset's fields; options given explicitly win
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from eca_ref.errors import CheckpointError, InputError
from eca_ref.models import ResNetConfig
from eca_ref.models.resnet_spec import CONV_INITS
from eca_ref.train.optim import SGDConfig
from eca_ref.train.schedule import SCHEDULES, Schedule
from eca_ref.validation import check_int

__all__ = ["PRESETS", "TrainConfig", "config_from_preset", "preset_config", "preset_fields", "schedule_for"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's weights. Two runs with equal configs on the same data
    produce the same weights, bit for bit."""

    attention: str = "eca"
    depth: int = 8
    width: int = 16
    k: int | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.2                     # peak learning rate of the schedule (0.2 beat 0.1 in 10 epochs: docs/results.md)
    schedule: str = "onecycle"
    warmup: float = 0.3                 # fraction of the steps rising to the peak
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    augment: bool = True
    zero_init_residual: bool = False    # each block's second BN weight starts at 0 (the block starts as its shortcut)
    init: str = "kaiming"               # conv weights: "kaiming" (normal, fan out) or "pytorch" (Conv2d's default)
    seed: int = 0
    limit: int | None = None            # use only the first `limit` train and test images

    def __post_init__(self):
        check_int(self.epochs, "epochs", min_value=1)
        check_int(self.batch_size, "batch_size", min_value=1)
        check_int(self.seed, "seed", min_value=0)
        if self.limit is not None:
            check_int(self.limit, "limit", min_value=1)
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InputError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0.0 <= self.label_smoothing < 1.0):
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not (isinstance(self.warmup, (int, float)) and 0.0 <= self.warmup < 1.0):
            raise InputError(f"warmup must be a fraction in [0, 1), got {self.warmup!r}")
        if not isinstance(self.zero_init_residual, bool):
            raise InputError(f"zero_init_residual must be true or false, got {self.zero_init_residual!r}")
        if self.init not in CONV_INITS:
            raise InputError(f"init must be one of {', '.join(CONV_INITS)}, got {self.init!r}")
        SGDConfig(self.momentum, self.weight_decay, self.nesterov)
        self.model_config()                                   # validates attention, depth, width, k

    def model_config(self) -> ResNetConfig:
        return ResNetConfig(depth=self.depth, width=self.width, attention=self.attention, k=self.k, num_classes=10)

    def sgd(self) -> SGDConfig:
        return SGDConfig(self.momentum, self.weight_decay, self.nesterov)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise CheckpointError(f"saved config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"saved config has unknown fields {unknown} (written by another version?)")
        return cls(**d)


# Named recipes: the fields each one sets (every other field keeps TrainConfig's default).
# "d20": ResNet-20 (0.27M parameters) for 30 epochs at peak learning rate 0.4 with 15% warmup.
# "d14w24": the same recipe on ResNet-14 of width 24 (fewer and wider layers: 1.44x the parameters,
# 1.3-1.5x the time a step) for 25 epochs, the longer run with the best accuracy measured inside 90
# minutes. Both take 80-90 minutes on the 2-core machines of docs/results.md (d14w24 with test_every=25),
# where they were measured (test accuracy there).
PRESETS = {
    "default": {},
    "d20": {"depth": 20, "epochs": 30, "lr": 0.4, "warmup": 0.15},
    "d14w24": {"depth": 14, "width": 24, "epochs": 25, "lr": 0.4, "warmup": 0.15},
}


def preset_fields(name: str | None, **given) -> dict:
    """The fields a run sets explicitly: the preset's (``name``; None: no preset), with every field
    in ``given`` (options given explicitly, e.g. on the command line) winning over the preset's.

    A new run is ``TrainConfig(**preset_fields(...))``; a resumed run must agree with every one of
    these fields (see :func:`eca_ref.train.resume`'s ``expect``).
    """
    if name is None:
        return dict(given)
    if not isinstance(name, str) or name not in PRESETS:
        raise InputError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return {**PRESETS[name], **given}


def config_from_preset(name: str | None, **given) -> TrainConfig:
    """TrainConfig of a named preset (see PRESETS; None: the defaults), with any field given by
    keyword winning over the preset's value."""
    return TrainConfig(**preset_fields(name, **given))


def preset_config(name: str, **overrides) -> TrainConfig:
    """TrainConfig of a named preset (see PRESETS), with any field overridden by keyword
    (:func:`config_from_preset` with a name required)."""
    if name is None:
        raise InputError(f"preset must be one of {', '.join(PRESETS)}, got None")
    return config_from_preset(name, **overrides)


def schedule_for(cfg: TrainConfig, n_train: int) -> Schedule:
    """The learning-rate schedule of a run of ``cfg`` on ``n_train`` images (the last batch of an
    epoch may be short: every batch is a step)."""
    steps_per_epoch = -(-n_train // cfg.batch_size)
    return Schedule(cfg.schedule, peak=float(cfg.lr), total_steps=cfg.epochs * steps_per_epoch, warmup=float(cfg.warmup))
