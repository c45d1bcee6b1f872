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
# # 06 · Vector-valued MQAR: can Mamba look things up?
#
# **The question.** Associative recall is the simplest retrieval task: the prompt lists $K$ key-value pairs
# $k_1, v_1, \dots, k_K, v_K$ and then a query equal to one of the keys; the answer is that key's value. Park et al.
# (2024) use a *vector-valued* version (keys and values are random vectors on a sphere, after Zoology's multi-query
# associative recall, MQAR) and report:
#
# - Mamba fails at it, even when made larger; the Transformer and MambaFormer solve it (claims 2 and 4).
#
# The intuition: attention can compare the query with every stored key directly, while Mamba must compress all $K$
# pairs into a fixed-size state as it reads them, and continuous vectors do not compress into a few state entries
# the way token identities can.
#
# **Setup.** `experiments.mqar(profile)`: $d = 20$, keys and values uniform on the sphere of radius $\sqrt d$, one
# query per prompt (a uniformly chosen key), MSE loss on the recalled vector, lr $2 \cdot 10^{-4}$, gradient clip
# 100 (Park et al.'s settings). Transformer, Mamba and MambaFormer at widths 64 and 128 and with $K$ = 16, 32 and 64
# pairs (width 32 and $K$ = 8, 16 in the smoke profile), one seed each. The metric is accuracy: the prediction counts
# as correct when, of the prompt's $K$ values, the true one is nearest to it (largest inner product), so chance is
# $1/K$.
#
# **Reduced compute.** 20k steps instead of 500k; Park et al.'s exact MQAR variant (number of queries, sizes) could
# not be verified in the paper or its code, so this is the single-query task of their code at the sizes above.

# %% tags=["parameters"]
profile = "paper"
models = None  # None: Transformer, Mamba and MambaFormer; a list selects some

# %%
import matplotlib.pyplot as plt

from icllib import experiments
from icllib.analysis import curves, plotting, report
from icllib.config import config_hash

plotting.use_paper_style()

# %% [markdown]
# ## The runs
# From the store when there (the paper profile's GPU runs under `results/paper/`), trained otherwise. The smoke
# profile runs every configuration of its own small grid (short prompts of 17 and 33 tokens keep even Mamba's CPU runs
# under half a minute), for 120 steps: near chance, so it checks the plumbing, not the claim.

# %%
configs = [c for c in experiments.mqar(profile) if models is None or curves.model_label(c) in models]
runs = report.load_runs(configs)
table = report.final_table(configs, runs)
model_names = list(dict.fromkeys(table["model"]))
widths = sorted(set(table["d_model"]))
pairs = sorted(set(table["n_points"]))
print(f"{len(configs)} runs: {model_names} x widths {widths} x key-value pairs {pairs}, "
      f"{configs[0].train.steps} steps")

# %% [markdown]
# ## Accuracy against the number of key-value pairs, one panel per width
# Each line is one architecture; the dotted grey line is chance, $1/K$. Moving right, the state has more pairs to
# hold; moving to the next panel, the model has more channels to hold them in.

# %%
fig, axes = plt.subplots(1, len(widths), figsize=(4.4 * len(widths), 3.5), squeeze=False, sharey=True)
for ax, width in zip(axes[0], widths, strict=True):
    report.plot_sweep(ax, table[table["d_model"] == width], "n_points", models=model_names)
    ax.plot(pairs, [1 / k for k in pairs], ":", color="0.6", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(pairs, [str(k) for k in pairs])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("key-value pairs $K$")
    ax.set_title(f"d_model = {width}")
axes[0, 0].set_ylabel("recall accuracy")
axes[0, 0].legend(fontsize=7)
fig.suptitle(f"Vector-valued associative recall, d = 20 ({profile} profile)", y=1.02)
fig.tight_layout()
plotting.savefig(fig, "06_mqar", profile=profile,
                 sidecar={"params": {"models": models}, "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %%
table.pivot_table(index=["model", "d_model"], columns="n_points", values="final").round(3)

# %% [markdown]
# **Reading the figure.** The claims hold when the Transformer's and MambaFormer's lines stay near 1 across $K$ while
# Mamba's sits well below them and falls as $K$ grows, and when widening Mamba (the next panel) does not close the
# gap. A Mamba line that rises with width but falls with $K$ is the capacity story: its state grows with the width
# ($16$ state entries per channel), so a wider Mamba can store more pairs, but never all of them exactly.
#
# Caveats. One seed per cell and 20k steps; retrieval tasks can also show abrupt learning, so a cell near chance
# may be slow rather than unable. The metric is recall among the prompt's own values: a prediction that averages
# several values can still point to the right one, so accuracy is kinder than the MSE the models are trained on.
#
# ## Try this
# - `models = ["mamba"]`: only the Mamba runs, to compare the two widths side by side.
# - Ask for more queries per prompt (`TaskConfig("vector_mqar", n_dims=20, kwargs={"n_queries": 16})` in a copy of
#   the experiment): Zoology's multi-query setting, where every query reuses the same stored pairs.

# %%
# NBVAL_CHECK_OUTPUT
print(f"runs: {len(table)}; per architecture: {table.groupby('model').size().to_dict()}")
print(f"widths: {widths}; key-value pairs: {pairs}")
print(f"accuracies in [0, 1]: {bool(table['final'].between(0, 1).all())}; "
      f"chance levels are 1/K: {bool((table['chance'] * table['n_points']).round(6).eq(1).all())}")
