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
# # 01 · The tasks, and what classical learners make of them
#
# **The question.** Every later notebook asks "how well does a sequence model learn *this* function class in
# context?". Before training anything we need to know what the prompts look like, and how well the textbook
# learners do on the very same prompts when they fit the examples $(x_j, y_j)_{j<i}$ and predict $y_i$. Those curves
# are the yardsticks: least squares is optimal for noiseless linear regression, Lasso for sparse regression, a small
# network trained by gradient descent for the 2-layer ReLU task, greedy trees and boosting for decision trees, and an
# exact solver for sparse parity.
#
# **Setup.** Park et al. (2024) and Grazzi et al. (2024) families with their default sizes: $d = 20$ for the
# regression families, $d = 10$ for parity and CoT. Errors are squared errors normalised as in the papers (by $d$ for
# linear and 2NN regression, so the zero predictor scores about 1); parity is scored by accuracy.

# %% tags=["parameters"]
profile = "paper"
seed = 0
n_points = 41
n_examples = 1280
slow_baselines = True
slow_examples = 16

# %%
import matplotlib.pyplot as plt
import torch

from icllib.analysis import plotting
from icllib.analysis.curves import SLOW_BASELINES, band, baseline_curves
from icllib.analysis.viz import default_dims, draw_task, family_config, make_task
from icllib.tasks import TASKS

plotting.use_paper_style()
families = TASKS.names()
print(f"{len(families)} families: {', '.join(families)}")

# %% [markdown]
# ## One prompt of every family
# Each panel draws one sampled prompt. Regression families: $y$ against the first coordinate of $x$ (the function
# depends on all $d$ coordinates, so this is a shadow of it); outlier families mark the corrupted pairs in red.
# Parity: the $\pm 1$ bits of 20 examples with the label in the last column. CoT: $y$ and the first intermediate
# $s$. Vector MQAR: how much each token resembles each key, with the queries marked. Token tasks: the input ids and,
# where the loss is read, the targets.

# %%
fig, axes = plt.subplots(3, 5, figsize=(12, 7))
for ax, name in zip(axes.flat, families, strict=False):
    draw_task(ax, make_task(name), torch.Generator().manual_seed(seed))
for ax in axes.flat[len(families):]:
    ax.axis("off")
fig.tight_layout()
plotting.savefig(fig, "01_tasks_and_baselines", profile=profile, sidecar={"params": {"seed": seed}})
plt.show()

# %% [markdown]
# ## Baselines against the number of in-context examples
# All baselines of a family see the same prompts (drawn from the evaluation seed range). The fast ones (least
# squares, ridge, averaging, 3-NN, the zero predictor, the parity solvers) run on `n_examples` prompts. The slow ones
# fit a fresh scikit-learn model or Adam-trained network for every prefix of every prompt, so they run on the first
# `slow_examples` prompts only (wider bands), and not at all when `slow_baselines` is off (the smoke profile).
# The two out-of-distribution families (`quadrant_linear_regression`, `ood_linear_regression`: Garg's evaluation
# prompts, whose queries differ from the context points) are evaluation-only variants of linear regression and are
# left out here. No notebook evaluates trained models on them yet (that needs an OOD evaluation written into
# eval.json at the end of training).

# %%
curve_families = [name for name in families
                  if make_task(name).io().format == "pairs"
                  and name not in ("quadrant_linear_regression", "ood_linear_regression")]
curves = {name: baseline_curves(family_config(name, seed=seed, n_examples=n_examples), n_points=n_points,
                                slow=slow_baselines, slow_examples=slow_examples)
          for name in curve_families}
fig, axes = plt.subplots(2, 5, figsize=(14, 5.6), sharex=True)
for ax, (name, per_baseline) in zip(axes.flat, curves.items(), strict=False):
    for i, (baseline, curve) in enumerate(per_baseline.items()):
        style = "--" if baseline in SLOW_BASELINES else "-"
        ax.plot(range(n_points), curve.mean, style, color=f"C{i}", lw=1.2, label=baseline)
        ax.fill_between(range(n_points), *band(curve), color=f"C{i}", alpha=0.15)
    task = make_task(name)
    ax.axvline(default_dims(name), color="0.7", ls=":", lw=1)
    ax.set_title(name, fontsize=8)
    ax.set_ylabel(task.metric_name, fontsize=7)
    ax.set_ylim(0, 1.05 if task.higher_is_better else 2.0)
    ax.legend(fontsize=5)
for ax in axes[-1]:
    ax.set_xlabel("in-context examples $i$", fontsize=8)
for ax in axes.flat[len(curves):]:
    ax.axis("off")
fig.tight_layout()
plotting.savefig(fig, "01_tasks_and_baselines_curves", profile=profile,
                 sidecar={"params": {"seed": seed, "n_points": n_points, "n_examples": n_examples,
                                     "slow_baselines": slow_baselines, "slow_examples": slow_examples}})
plt.show()

# %% [markdown]
# **Reading the figure.** The dotted line marks $i = d$. On noiseless linear regression least squares follows
# $(d - i)/d$ and is exact from $i = d$ on; ridge is close behind, averaging and 3-NN barely improve at $d = 20$.
# Noise and anisotropy (skewed covariance) keep least squares above zero and make its error spike near $i = d$,
# where the minimum-norm solution is worst conditioned. Lasso exploits sparsity ($k = 3$) and gets there well before
# $i = d$. On 2NN and decision trees least squares is a poor fit and can exceed the zero predictor: the references
# there are the fitted network and the tree learners, which keep improving slowly. The outlier tasks count only
# clean positions; least squares fitted to the corrupted pairs is hurt badly, while `least_squares_clean` (an
# oracle told which pairs are outliers) shows what ignoring them perfectly would give. The parity solver's accuracy
# reaches 1 once a single $k$-subset is consistent with the examples.
#
# ## Try this
# - Set `slow_baselines = True` and `slow_examples = 4` in the smoke profile to see the tree and network baselines.
# - Raise `n_points` to 81: every regression baseline keeps improving or stays flat, since none was trained.
# - Compare `noisy_linear_regression` with `linear_regression`: the spike at $i = d$ is the double-descent peak of
#   minimum-norm least squares.

# %%
# NBVAL_CHECK_OUTPUT
ls = curves["linear_regression"]["least_squares"].mean
d = default_dims("linear_regression")
print(f"least squares on linear regression, d={d}: error at n=d/2 {ls[d // 2]:.2f}, n=d {ls[d]:.2f}, "
      f"n=2d {ls[2 * d]:.2f}")
print(f"zero predictor at n=d/2: {curves['linear_regression']['zero'].mean[d // 2]:.2f}")
