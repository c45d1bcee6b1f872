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
# # 03 · Sparse parity: does Mamba need selection?
#
# **The question.** Sparse parity is the task where Park et al. (2024) found Mamba *better* than the Transformer: the
# label is the product of $k = 2$ hidden coordinates out of $d = 10$ random $\pm 1$ bits,
# $y = x_{j_1} x_{j_2}$, and the model must find the pair $\{j_1, j_2\}$ from the examples in the prompt. They
# attribute Mamba's success to its *selection* mechanism (Δ, B and C computed from the input, "S6"), and show that
# the same block without selection (an input-independent, time-invariant state-space layer, "S4") does worse.
# Claims checked here:
#
# - Mamba (S6) learns sparse parity in context; Mamba without selection does worse (claim 5).
# - The Transformer fails or is far slower; MambaFormer learns it (claims 3 and 4).
#
# **Setup.** `experiments.parity_s4_vs_s6(profile)`: $d = 10$, $k = 2$, $N = 140$ examples per prompt (40 in the
# smoke profile), one hidden pair per training batch, binary cross-entropy on every position, lr $4 \cdot 10^{-4}$,
# no curriculum. `mamba_s4` is `mamba` with Δ, B, C made input-independent and nothing else changed (same width,
# depth, convolution and gate; `models/s4.py` lists the remaining differences from Park et al.'s `s4-mamba`).
# Two seeds per architecture. The metric is accuracy (sign of the output vs the label); a coin scores 1/2. A model
# that never finds the pair can still do better than a coin: for $x$ with many equal bits most of the 45 pairs give
# $y = +1$, so voting over all pairs at $x_i$ alone scores $71/128 \approx 0.555$ (`SparseParity.blind_accuracy`).
# That level, not 1/2, is what "learned the label prior but not the parity" looks like.
#
# **Reduced compute.** 30k steps instead of 500k, at about 0.45M parameters. A hidden pair can be identified after
# about 6–10 examples (there are 45 candidate pairs and each example rules out about half of them), so a model that
# learned the task is near accuracy 1 over the late positions; one that did not stays at or near 0.555.

# %% tags=["parameters"]
profile = "paper"
seeds = None  # None: every seed of the experiment (two); a list selects some (the smoke profile does)

# %%
import matplotlib.pyplot as plt

from icllib import experiments
from icllib.analysis import curves, plotting, report
from icllib.config import config_hash
from icllib.tasks import build_task
from icllib.training.train import final_curve

plotting.use_paper_style()

# %% [markdown]
# ## The runs
# From the store when there (the paper profile's GPU runs under `results/paper/`), trained otherwise. The smoke
# profile keeps one seed (`seeds` in `params/smoke.yaml`) and trains 120 steps on a CPU: far too few to leave chance,
# so its figure shows the plumbing, not the result.

# %%
configs = [c for c in experiments.parity_s4_vs_s6(profile) if seeds is None or c.seed in seeds]
runs = report.load_runs(configs)
table = report.final_table(configs, runs)
model_names = list(dict.fromkeys(table["model"]))
print(f"{len(configs)} runs: {model_names}, seeds {sorted(set(table['seed']))}, "
      f"{configs[0].curriculum.points_end} examples per prompt, {configs[0].train.steps} steps")

# %% [markdown]
# ## Final accuracy, and accuracy against the number of examples
# Left: accuracy over the late positions (the last quarter of the prompt) after training, a bar at the mean over
# seeds and a dot per seed. Right: each run's accuracy at every position of the prompt (90% bands over prompts); the
# dashed grey line is the parity solver, which keeps the pairs consistent with the examples so far and votes: the
# best any learner can do on these prompts. The dash-dotted line is the same vote over all pairs, ignoring the
# examples (the solver at $i = 0$); the dotted line is a coin.

# %%
solver = curves.baseline_curves(configs[0])["parity_solver"]
blind = build_task(configs[0].task).blind_accuracy()
fig, (ax_bar, ax_pos) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
report.plot_seeds(ax_bar, table, models=model_names)
ax_bar.axhline(0.5, color="0.6", ls=":", lw=1)
ax_bar.axhline(blind, color="0.5", ls="-.", lw=0.8)
ax_bar.set_ylim(0, 1.05)
ax_bar.set_ylabel("accuracy, late positions")
ax_bar.set_title("after training")
for i, (model, run) in enumerate(zip(table["model"], runs, strict=True)):
    first = model not in list(table["model"])[:i]
    curves.plot_curve(ax_pos, final_curve(run), label=model if first else None, color=plotting.color(model),
                      lw=1.3 if first else 0.8)
curves.plot_curve(ax_pos, solver, label="parity solver", color=plotting.color("baseline"), ls="--", lw=1.3,
                  shade=False)
ax_pos.axhline(0.5, color="0.6", ls=":", lw=1)
ax_pos.axhline(blind, color="0.5", ls="-.", lw=0.8, label=f"vote ignoring the examples ({blind:.3f})")
ax_pos.set_ylim(0.2, 1.05)
ax_pos.set_xlabel("in-context examples $i$")
ax_pos.set_ylabel("accuracy")
ax_pos.set_title(f"sparse parity, d=10, k=2 ({profile} profile)")
ax_pos.legend(fontsize=7, ncol=2, loc="lower right")
fig.tight_layout()
plotting.savefig(fig, "03_parity_s4_vs_s6", profile=profile,
                 sidecar={"params": {"seeds": seeds}, "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %%
table[["model", "seed", "final", "last"]].round(3)

# %% [markdown]
# **Reading the figure.** Claim 5 holds when Mamba's bar is near 1 and `mamba_s4`'s clearly lower (at the dash-dotted
# line means it learned the label prior and nothing in context). Because parity is learned abruptly (a long plateau
# near that line, then a jump), seeds of the same architecture can land on different sides of the jump at a fixed
# budget: the per-seed dots say whether a gap between architectures is larger than the gap between seeds. Notebook 04
# shows *when* during training each run jumps. The right panel shows *how* a model solves it: after the jump,
# accuracy climbs over the first few examples like the solver's, then stays near 1.
#
# Caveats. Which non-selective model Park et al. used is not stated in the code we could read (their S4 config is
# the S4D block without Mamba's convolution and gate); ours changes only selection, which is the cleaner ablation but
# may not be theirs. At 30k steps a "fails" can mean "not yet": run `icl sweep parity_s4_vs_s6` with more steps to
# tell the two apart.
#
# ## Try this
# - `seeds = [0]` with `profile = "smoke"`: one run per architecture in about two minutes on a CPU.
# - Compare the right panel's first 10 positions with the solver: a model that beats the solver there would be
#   cheating (it cannot), one that lags it is not using every example optimally.

# %%
# NBVAL_CHECK_OUTPUT
print(f"runs: {len(table)}; per architecture: {table.groupby('model').size().to_dict()}")
print(f"accuracies in [0, 1]: {bool(table['final'].between(0, 1).all())}; "
      f"solver accurate at the last position: {solver.mean[-1] > 0.95}")
