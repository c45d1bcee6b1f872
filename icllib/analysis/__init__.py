"""The analysis layer: what is read from stored runs and shown. Classical baselines to compare against
(baselines.py), what every report does with a curve (curves.py: the 90% band, drawing a curve, averages over
positions, the baselines' curves on a run's prompts, a run's model label), tables and panels over runs (report.py
for Park et al.'s experiments, report_grazzi.py for Grazzi et al.'s), task pictures (viz.py), figure style and
saving (plotting.py) and the selective scan's roofline (roofline.py). It sits above training and experiments (a
report may train a missing run through `load_or_train`) and below the figures and the CLI. Submodules are imported
where used (reports pull in pandas).
"""

from icllib.analysis.baselines import BASELINES, applicable

__all__ = ["BASELINES", "applicable"]
