"""Training: SGD with Nesterov momentum, learning-rate schedules, the loop, checkpoints, evaluation.

Every entry point is a plain function that returns a result; ``eca-ref train``,
``eca-ref evaluate``, ``eca-ref gates`` and ``eca-ref ablate`` only format what these return.
"""
from eca_ref.train.ablate import AblationResult, ablate
from eca_ref.train.checkpoint import load_checkpoint, save_checkpoint
from eca_ref.train.evaluate import EvalResult, confusion_matrix, evaluate_run
from eca_ref.train.gates import GateStats, gate_statistics
from eca_ref.train.loop import PRESETS, TrainConfig, TrainResult, predict, preset_config, resume, train
from eca_ref.train.optim import SGDConfig, sgd_init, sgd_step
from eca_ref.train.schedule import Schedule

__all__ = [
    "AblationResult", "EvalResult", "GateStats", "PRESETS", "SGDConfig", "Schedule", "TrainConfig", "TrainResult", "ablate",
    "confusion_matrix", "evaluate_run", "gate_statistics", "load_checkpoint", "predict", "preset_config", "resume", "save_checkpoint",
    "sgd_init", "sgd_step", "train",
]
