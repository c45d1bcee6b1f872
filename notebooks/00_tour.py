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
# # 00 · A tour: what "learning in context" means here
#
# **The question.** Give a sequence model a prompt of input/output pairs
# $(x_1, f(x_1), \dots, x_{i-1}, f(x_{i-1}), x_i)$ from a function $f$ it has never seen, and ask it for $f(x_i)$.
# If the error falls as the prompt grows, the model is *learning in context*: it infers $f$ from the examples
# without any weight update.
#
# Garg et al. (2022) showed that Transformers trained on random linear functions $f(x) = w^\top x$ do this about as
# well as least squares. Park et al. (2024) and Grazzi et al. (2024) ask whether Mamba, a selective state-space
# model, can do the same. This notebook sets up the yardstick every later notebook uses: **least squares on the same
# prompts**, whose error per in-context position we compute exactly here.
#
# **Setup.** $x \sim \mathcal N(0, I_d)$ with $d = 20$, $w \sim \mathcal N(0, I_d)$, $y = w^\top x$, no noise.
# The y-axis is the squared error divided by $d$ ("normalized squared error"): predicting 0 scores 1.
# With fewer than $d$ examples least squares (the minimum-norm solution) cannot pin down $w$: its expected error is
# $(d - i)/d$ after $i$ examples, and it is exactly 0 from $i = d$ on.

# %% tags=["parameters"]
profile = "paper"
seed = 0

# %%
import matplotlib.pyplot as plt
import torch

from icllib import experiments
from icllib.analysis import plotting
from icllib.analysis.curves import band
from icllib.config import config_hash
from icllib.repro import eval_generator
from icllib.tasks import build_task
from icllib.training.evaluate import sample_eval_batches
from icllib.training.train import final_curve, load_or_train

plotting.use_paper_style()

# %% [markdown]
# ## The runs
# `experiments.tour(profile)` returns the two run configurations (the same function `icl sweep tour` uses).
# `load_or_train` returns a run from the store when it is there (the paper profile's runs were trained on an H100 and
# are committed under `results/paper/`) and trains it otherwise: in the smoke profile that takes seconds on a CPU,
# with tiny models and a few hundred steps, so expect the smoke curves to sit near the zero predictor.

# %%
configs = experiments.tour(profile)
for cfg in configs:
    print(f"{cfg.name}: layers={cfg.model.layers} d_model={cfg.model.d_model} steps={cfg.train.steps} "
          f"hash={config_hash(cfg)}")
runs = [load_or_train(cfg, progress=False) for cfg in configs]
curves = {cfg.name.removeprefix("tour_"): final_curve(run) for cfg, run in zip(configs, runs, strict=True)}

# %% [markdown]
# ## Least squares on the same prompts
# Every run is evaluated on a fixed set of prompts drawn from the evaluation seed range. We redraw that set here and
# fit least squares on the first $i$ pairs of each prompt (the minimum-norm solution via the pseudo-inverse, batched
# over prompts) to predict $y_i$. At $i = 0$ there is nothing to fit and the prediction is 0.

# %%
task = build_task(configs[0].task)
n_points, n_dims = configs[0].curriculum.points_end, configs[0].task.n_dims
batches = sample_eval_batches(task, n_points, configs[0].eval.n_examples, eval_generator(configs[0].seed),
                              batch_size=configs[0].eval.batch_size)
xs = torch.cat([b.xs for b in batches])  # [B, N, d]
ys = torch.cat([b.ys for b in batches])  # [B, N]
least_squares = [ys[:, 0].pow(2).mean().item() / n_dims]
for i in range(1, n_points):
    w_hat = torch.linalg.pinv(xs[:, :i]) @ ys[:, :i, None]  # [B, d, 1]
    pred = (xs[:, i : i + 1] @ w_hat)[:, 0, 0]  # [B]
    least_squares.append((pred - ys[:, i]).pow(2).mean().item() / n_dims)
theory = [max(n_dims - i, 0) / n_dims for i in range(n_points)]

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4))
positions = range(n_points)
for name, curve in curves.items():
    ax.plot(positions, curve.mean, color=plotting.color(name), label=name)
    ax.fill_between(positions, *band(curve), color=plotting.color(name), alpha=0.2)
ax.plot(positions, least_squares, color=plotting.color("least_squares"), ls="-", marker="o", ms=2.5,
        label="least squares")
ax.plot(positions, theory, "k--", lw=1, label="$(d-i)/d$")
ax.axhline(1.0, color="0.6", ls=":", lw=1, label="zero predictor")
ax.set_xlabel("in-context examples $i$")
ax.set_ylabel("normalized squared error")
ax.set_ylim(-0.05, 1.6)
ax.set_title(f"Linear regression, d = {n_dims} ({profile} profile)")
ax.legend(fontsize=8)
plotting.savefig(fig, "00_tour", profile=profile,
                 sidecar={"params": {"seed": seed}, "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %% [markdown]
# **Reading the figure.** Least squares follows $(d-i)/d$ and drops to zero at $i = d$. A model that learned to
# regress in context should bend its curve down in the same way: its error at position $i$ uses only the $i$ pairs
# before it, and its weights never change between prompts. Shaded bands are 90% intervals over the evaluation
# prompts. With the paper profile's reduced compute (20k steps instead of 500k) the models need not reach least
# squares; how close they get is the result, not a target.
#
# ## Try this
# - Run with `profile = "smoke"`: both models train on the CPU in seconds and stay near the zero predictor.
# - Compare the curves at $i < d$ and $i \ge d$: a model that only averaged the examples would not drop at $i = d$.

# %%
# NBVAL_CHECK_OUTPUT
print(f"least squares error at i=0: {least_squares[0]:.1f}, at i=d/2: {least_squares[n_dims // 2]:.1f}, "
      f"at i>=d: {max(least_squares[n_dims:]):.1f}")
for name, curve in curves.items():
    print(f"{name}: evaluated on {curve.count[0]} prompts; error at the last position below 2: "
          f"{curve.mean[-1] < 2}")
