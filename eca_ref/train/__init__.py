"""Training: SGD with Nesterov momentum, learning-rate schedules, the loop, checkpoints, evaluation.

Modules: config (TrainConfig, PRESETS, config_from_preset), step (train_step: one step), loop
(train, resume), state (the checkpointed state), dataset, rundir (config.json, metrics.jsonl),
interrupt (Ctrl-C and SIGTERM), result (TrainResult), runner (the model passes, from eca_ref.engine),
evaluate, gates, ablate, optim, schedule, checkpoint, checkmeta (a checkpoint's fields checked
together), lock (one run per directory), datasource (where a saved run finds its data).

Every entry point is a plain function that returns a result; ``eca-ref train``,
``eca-ref evaluate``, ``eca-ref gates`` and ``eca-ref ablate`` only format what these return.
"""
from eca_ref.train.ablate import AblationResult, ablate
from eca_ref.train.checkpoint import load_checkpoint, save_checkpoint
from eca_ref.train.config import PRESETS, TrainConfig, config_from_preset, preset_config, preset_fields
from eca_ref.train.evaluate import EvalResult, confusion_matrix, evaluate_arrays, evaluate_run, predict
from eca_ref.train.gates import GateStats, gate_statistics
from eca_ref.train.loop import resume, train
from eca_ref.train.optim import SGDConfig, sgd_init, sgd_step
from eca_ref.train.result import TrainResult
from eca_ref.train.schedule import Schedule
from eca_ref.train.step import StepOutput, train_step

__all__ = [
    "AblationResult", "EvalResult", "GateStats", "PRESETS", "SGDConfig", "Schedule", "StepOutput", "TrainConfig",
    "TrainResult", "ablate", "config_from_preset", "confusion_matrix", "evaluate_arrays", "evaluate_run",
    "gate_statistics", "load_checkpoint", "predict", "preset_config", "preset_fields", "resume", "save_checkpoint",
    "sgd_init", "sgd_step", "train", "train_step",
]
