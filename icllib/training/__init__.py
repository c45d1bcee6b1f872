"""The training layer: one run from config to stored result. `train` runs the loop (train.py) on batches sampled
by the curriculum (batches.py, curriculum.py), one optimizer step at a time (step.py: eager or a CUDA graph), with
periodic and final evaluation (evaluate.py); `validate.py` checks a config fully before anything is written. It
builds on the models, the task families and the store, and knows nothing of sweeps, reports or figures.

The package attribute `icllib.training.train` is the function exported here, which shadows the submodule of the same
name (`import icllib.training.train as T` binds the function); reach the module with
`importlib.import_module("icllib.training.train")`.
"""

from icllib.training.train import MissingRunError, TrainingDiverged, final_curve, load_or_train, run_steps, train

__all__ = ["MissingRunError", "TrainingDiverged", "final_curve", "load_or_train", "run_steps", "train"]
