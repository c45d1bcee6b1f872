"""The runs layer: many training runs at a time and moving their records. `train_many` interleaves runs on one GPU
(interleave.py), `sweep.py` deals an experiment's runs to GPUs and jobs (inline, local processes or Slurm through
submitit), and `transfer.py` exports and imports stored runs between machines. It drives the training layer and the
store, and never changes what one run computes.
"""

from icllib.runs.interleave import train_many
from icllib.runs.transfer import ImportReport, export_runs, import_runs

__all__ = ["ImportReport", "export_runs", "import_runs", "train_many"]
