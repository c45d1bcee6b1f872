# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The results grid: which architecture learns which task in context?
#
# **The question.** Park et al. (2024) train five architectures on nine in-context learning families and summarise
# the outcome in one table (their Table 1): on which tasks does Mamba match the Transformer, where does it fall
# behind, and does a hybrid fix that? Their claims, which this notebook checks at reduced compute:
#
# 1. Mamba ≈ Transformer on linear, sparse linear and 2-layer ReLU-network regression.
# 2. Mamba is worse than the Transformer on decision trees, orthogonal-outlier regression and vector-valued MQAR.
# 3. The Transformer fails (or is far slower) on sparse parity; Mamba learns it.
# 4. MambaFormer (a Mamba block in place of positional encoding, then alternating attention and Mamba) does well on
#    every task.
#
# **Setup.** `experiments.results_grid(profile)` returns one run per (architecture, task): Transformer (GPT-2),
# Mamba, MambaFormer, Standard Hybrid (attention first, learned positions) and Mamba without selection (`mamba_s4`,
# Δ, B, C input-independent), at matched parameter counts (about 0.45M in the paper profile). Every run is evaluated on
# a fixed set of prompts (1280 in the paper profile). The metric is the papers': squared error normalised so that
# predicting 0 scores about 1 (linear, 2NN and outlier regression divide by $d = 20$, sparse regression by $k = 3$;
# CoT-I/O divides by $d = 10$), and accuracy for sparse parity and vector MQAR.
#
# **Reduced compute.** The paper profile trains 20k–30k steps instead of Park et al.'s 500k (1M for many-outlier
# regression), one seed per cell, with every curriculum compressed in proportion. Many-outlier prompts hold 256
# examples instead of 512 (about 26 clean pairs instead of 51; the full profile keeps 512): the one task change
# we allow ourselves when GPU time is short, taken because a 1024-token prompt has five times the tokens of a
# 101-example one and these small models train GPU-bound at that length.
# A cell that looks worse than the paper may simply be under-trained; the notebooks 03–06 look at the most contested
# cells with more seeds and sizes.

# %% tags=["parameters"]
profile = "paper"
tasks = None  # None: all nine families; a list selects some (the smoke profile does)
models = None  # None: all five architectures; a list selects some
baseline_examples = 256  # baselines run on the first prompts of each task's evaluation set
slow_baselines = True  # the sklearn / gradient-descent baselines (Lasso, trees, boosting, 2-layer net)
slow_examples = 16  # ...evaluated on this many prompts only (they fit one model per prefix of every prompt; at 32
#                     the decision-tree ones alone took 171 s on a busy 2-core CPU; `make figures` has 5 min in all)

# %%
import matplotlib.pyplot as plt

from icllib import experiments
from icllib.analysis import curves, plotting, report
from icllib.config import config_hash
from icllib.training.train import final_curve

plotting.use_paper_style()

# %% [markdown]
# ## The runs
# `load_or_train` returns each run from the store when it is there (the paper profile's runs were trained on a GPU
# and are committed under `results/paper/`) and trains it otherwise. The smoke profile trains tiny models for 120
# steps on a CPU, where a Mamba run costs about a minute (the reference scan loops over the sequence), so it keeps
# only a few cells of the grid (`tasks`, `models` in `params/smoke.yaml`) and its numbers are near chance: it checks
# that the notebook runs, not what the architectures can learn.

# %%
configs = [c for c in experiments.results_grid(profile)
           if (tasks is None or c.task.name in tasks) and (models is None or curves.model_label(c) in models)]
runs = report.load_runs(configs)
table = report.final_table(configs, runs)
task_names = list(dict.fromkeys(table["task"]))
model_names = list(dict.fromkeys(table["model"]))
print(f"{len(configs)} runs: {len(model_names)} architectures x {len(task_names)} task families")

# %% [markdown]
# ## The grid
# Each cell is the final metric averaged over the *late* in-context positions (the last quarter of the prompt, where
# every task is identifiable from the examples; `report` explains why). Arrows give the direction: ↓ error, ↑
# accuracy. The colour is a common "skill" scale, 0 for the trivial predictor (the best one that ignores the
# examples: predict 0, pick one of the K values at random, or for parity vote over all hidden pairs, 0.555) and 1 for
# perfect, so error and accuracy columns can be read together.

# %%
fig, ax = plt.subplots(figsize=(1.1 * len(task_names) + 3, 0.5 * len(model_names) + 2.2))
report.heatmap(ax, table, rows=model_names, cols=task_names)
ax.set_title(f"Final metric, late positions ({profile} profile)")
plotting.savefig(fig, "02_results_grid", profile=profile,
                 sidecar={"params": {"tasks": tasks, "models": models},
                          "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %% [markdown]
# ## Error against the number of in-context examples
# One panel per family: each architecture's final evaluation curve (90% bands over prompts) and, dashed grey, the
# best classical baseline that applies (`baselines.applicable`, run on the first `baseline_examples` of the same
# evaluation prompts, which keeps least squares on the long many-outlier prompts to seconds; the zero predictor is
# the dotted line). Vector MQAR is scored at its single query, so its panel has one bar per model (with its 90%
# interval); CoT-I/O and MQAR have no classical baseline. The outlier families' best baseline is usually
# `least_squares_clean`, an oracle told which pairs are corrupted, so it is an upper bound rather than a competitor.
# The slow baselines (trees, boosting, Lasso, the 2-layer network) fit one model per prefix of every prompt, so they
# see only `slow_examples` prompts and their curves are noisy, most of all on decision trees, whose heavy-tailed
# targets make single prompts swing the mean; the smoke profile skips them.

# %%
task_cfgs = {c.task.name: c for c in configs}
baselines = {t: curves.baseline_curves(c, n_examples=baseline_examples, slow=slow_baselines,
                                       slow_examples=slow_examples)
             for t, c in task_cfgs.items()}
n_cols = min(3, len(task_names))
n_rows = -(-len(task_names) // n_cols)
fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.0 * n_rows), squeeze=False)
drawn = {}
for ax, task in zip(axes.flat, task_names, strict=False):
    rows = table[table["task"] == task]
    model_curves = {m: final_curve(r) for m, r, t in zip(table["model"], runs, table["task"], strict=True) if t == task}
    drawn[task] = report.task_panel(ax, task, model_curves, baselines[task], chance=float(rows["chance"].iloc[0]),
                                    higher_is_better=bool(rows["higher_is_better"].iloc[0]))
    ax.set_ylabel(rows["metric"].iloc[0], fontsize=7)
    ax.legend(fontsize=5)
for ax in axes.flat[len(task_names):]:
    ax.axis("off")
fig.tight_layout()
plotting.savefig(fig, "02_results_grid_curves", profile=profile,
                 sidecar={"params": {"tasks": tasks, "models": models, "baseline_examples": baseline_examples,
                                     "slow_baselines": slow_baselines, "slow_examples": slow_examples,
                                     "baselines_drawn": drawn},
                          "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %%
table.pivot_table(index="model", columns="task", values="final").round(3)

# %% [markdown]
# **Reading the figures.** Compare each row with the claims above: a claim holds here when Mamba's cell is about as
# good as the Transformer's on linear, sparse and 2NN regression (claim 1), clearly worse on decision trees,
# orthogonal outliers and MQAR (claim 2), and clearly better on sparse parity (claim 3); and when MambaFormer's row
# has no weak cell (claim 4). In the curves, a model that learned the task in context follows (or beats) its
# baseline's shape: the linear families drop sharply around $i = d$ (or $i \approx 2k$ for Lasso), parity jumps to
# accuracy 1 after a handful of examples. One seed per cell and 20–30k steps are a thin basis for a "fails": notebook
# 03 repeats parity with two seeds and notebook 04 follows it over training, notebook 05 varies the width on CoT-I/O
# and notebook 06 varies width and the number of key-value pairs on MQAR. `REPRODUCTION.md` records which claims
# hold at this budget.
#
# ## Try this
# - `tasks = ["decision_tree"]` with `profile = "smoke"`: the grid shrinks to one column and trains in several minutes
#   on a CPU (the Mamba-type runs dominate); compare the curves with `greedy_tree` and `xgboost` by keeping
#   `slow_baselines = True`.
# - `models = ["mamba", "mamba_s4"]`: the same block with and without selection, on every task; notebook 03 does
#   this for parity with more seeds.

# %%
# NBVAL_CHECK_OUTPUT
print(f"runs: {len(table)}, architectures: {model_names}, tasks: {task_names}")
errors = table[~table["higher_is_better"]]
accuracies = table[table["higher_is_better"]]
print(f"every final metric finite: {bool(table['final'].notna().all())}")
print(f"errors >= 0: {bool((errors['final'] >= 0).all())}; accuracies in [0, 1]: "
      f"{bool(accuracies['final'].between(0, 1).all())}")
print(f"tasks with a baseline drawn: {sum(b is not None for b in drawn.values())} of {len(drawn)}")
