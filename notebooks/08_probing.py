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
# # 08 · Probing the layers: does the prediction improve block by block?
#
# **The question.** A model that regresses in context produces its answer at the last layer. Does it get there in
# one jump, or does each block refine an estimate, like the iterations of an optimiser? Grazzi et al. (2024) decode
# every layer's hidden state and find that, for both Mamba and the Transformer, the error falls gradually with depth
# ("iterative refinement", REPRODUCTION.md claim 9), resembling gradient descent more than a one-shot solve.
#
# **Setup.** Transformer (no positional embeddings) and Mamba trained on skewed-covariance linear regression
# ($d = 20$, $N = 41$), the 2-layer ReLU network and the depth-4 decision tree ($N = 101$), with the cosine schedule
# of notebook 07 (`experiments.probing`). At the end of training, for every residual stream $l$ (0 = the read-in,
# $l$ = after block $l$) an affine ridge probe $h_l \mapsto \hat y$ is fitted on the hidden states at the $x$ tokens
# of fresh prompts (all positions pooled) and scored on the run's fixed evaluation prompts, per position
# (`evaluate.probe_layers`; eval.json's `"probe"`). The error is normalized like the model's own (zero predictor ≈ 1).
#
# **Two probes.** The ridge probe above reads everything a layer holds: it is an upper bound on what the layer
# "knows". The second section runs **Grazzi et al.'s own protocol** (`evaluate.lens_probe`; eval.json's
# `"lens_probe"`): each layer is decoded through the model's own final norm and read-out ("logit lens"), a 1-D affine
# map (scale, shift) is fitted per prompt on context positions 30–39, and the mapped output is scored on 30 query
# points each appended on its own to a 40-example context. That asks what the layer would *output*.

# %% tags=["parameters"]
profile = "paper"
tasks = None
start = 20

# %%
import matplotlib.pyplot as plt
import pandas as pd

from icllib import experiments
from icllib.analysis import plotting
from icllib.analysis import report_grazzi as rg
from icllib.config import config_hash

plotting.use_paper_style()
pd.set_option("display.width", 160)

# %% [markdown]
# ## The runs
# Three families × two models. **The smoke profile keeps skewed linear regression only** (`params/smoke.yaml`): the
# smoke Mamba on the 2NN and tree prompts (202 tokens) takes about 5 minutes each on a CPU with the reference scan,
# skewed regression about a minute for both models. In the paper profile the runs come from `results/paper/`.

# %%
configs = rg.select(experiments.probing(profile), tasks=tasks)
for cfg in configs:
    print(f"{cfg.name}: blocks={len(cfg.model.layers)} d_model={cfg.model.d_model} steps={cfg.train.steps} "
          f"probe={cfg.eval.probe}")
results = rg.load_results(configs)

# %% [markdown]
# ## Error vs depth
# Each point is one layer's probe error averaged over positions `start` and later (from $i = 20 = d$ examples on,
# where least squares is exact on linear regression, so the remaining error is the model's, not the task's). The
# x-axis is the relative depth $l / L$ so that the 2-layer Transformer and the 4-block Mamba share an axis; the hollow
# marker at depth 1 is the model's own output. Iterative refinement shows as a curve that falls step by step; a
# one-shot solution would stay flat and drop at the last block.

# %%
fig = rg.plot_probe_depth(results, start=start)
plotting.savefig(fig, "08_probing_depth", profile=profile,
                 sidecar={"params": {"tasks": tasks, "start": start},
                          "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %% [markdown]
# ## Error vs in-context examples, one line per layer
# The same probes per position, for the first family: light lines are shallow layers, dark ones deep layers, the
# dashed black line is the model's output. If deeper layers are better at every $i$, the refinement is not tied
# to a particular number of examples.

# %%
first_task = results[0].task
fig = rg.plot_probe_positions(results, first_task)
plotting.savefig(fig, "08_probing_positions", profile=profile,
                 sidecar={"params": {"tasks": tasks, "task": first_task},
                          "config_hashes": [config_hash(c) for c in configs if c.task.name == first_task]})
plt.show()

# %%
table = rg.probe_table(results, start=start)
print(rg.wide(table, "layer", "error").round(3))

# %% [markdown]
# ## Grazzi et al.'s protocol: logit lens and a per-prompt affine map
# Top row: the error at the 30 query points (log scale, ±1 standard error over prompts) vs relative depth. Middle and
# bottom rows: the fitted scale and shift, averaged over prompts. Grazzi et al. read iterative refinement from an
# error that falls layer by layer while the scale approaches 1 and the shift 0 (the decoded output becomes the
# prediction itself, not just correlated with it). Runs stored before this probe existed are left out (a log line
# names them).

# %%
fig = rg.plot_lens(results)
plotting.savefig(fig, "08_probing_lens", profile=profile,
                 sidecar={"params": {"tasks": tasks, "n_context": 40, "n_test": 30, "fit_positions": [30, 39]},
                          "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %%
lens = rg.lens_table(results)
print(rg.wide(lens, "layer", "error").round(3))

# %% [markdown]
# **Reading the figure.** Claim 9 holds for a model if its probe error decreases (roughly monotonically) with depth
# and ends near its output error. Where the last probe beats the output, the read-out is not using everything the
# final hidden state holds.
#
# **Caveats.** The paper-profile models are shallow (Transformer 2 layers, Mamba 4 blocks, ~0.45M parameters, against
# Grazzi et al.'s 12 and 24 layers), so a depth curve has 3 or 5 points: "gradual" is a weak statement at that
# resolution. Training is 20k/30k steps instead of 500k, one seed. **The smoke profile** trains for 120 steps, so
# every probe sits at the zero predictor's error (≈ 1); differences in its figure are in the third decimal and mean
# nothing; it only shows that probes are fitted and stored for every layer.
#
# ## Try this
# - `start = 0` includes the first examples, where no estimator can do well; the depth curves flatten.
# - Compare the depth curve on `decision_tree` with `skewed_linear_regression`: a task without a closed-form solver
#   need not be refined in the same way.

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(results)} runs; tasks: {', '.join(dict.fromkeys(r.task for r in results))}")
for r in results:
    errors = table[(table.task == r.task) & (table.model == r.model)].error
    print(f"{r.task}/{r.model}: probed layers {sorted(r.probe)} of {r.n_layers} blocks, prompts {r.curve.count[0]}, "
          f"errors finite and below 10: {bool(errors.notna().all() and (errors < 10).all())}, "
          f"logit-lens layers {len(r.lens.get('layer', []))}")
