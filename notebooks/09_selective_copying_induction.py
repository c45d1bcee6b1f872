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
# # 09 · Selective copying and induction heads (the Mamba paper's synthetic tasks)
#
# **The question.** Gu & Dao (2023) motivate *selection*, making the state-space parameters $\Delta, B, C$ depend on
# the input, with two token tasks that a time-invariant SSM cannot solve well:
#
# - **Selective copying.** Data tokens are scattered at random positions among noise tokens; at the end, after a run
#   of marker tokens, the model must reproduce the data tokens in order. A linear time-invariant model (S4) has to
#   skip the noise with a fixed convolution, which cannot know where the data sits; an S6 layer can gate the noise
#   out. The paper reports S4 at 18% accuracy and Mamba (S6) at over 99%.
# - **Induction heads.** A trigger token appears once followed by a target token; at the end the trigger appears
#   again and the model must recall the target. Trained at length 256, Mamba solves it at lengths up to $2^{20}$,
#   while attention with absolute positions fails beyond the trained length.
#
# REPRODUCTION.md claim 10: S6 solves selective copying where S4 fails; induction heads extrapolate far beyond the
# trained length.
#
# **Setup.** `experiments.selective_copying_induction`: Mamba (S6), Mamba with $\Delta, B, C$ made input-independent
# (`mamba_s4`: the same blocks, so selection is the only change) and a Transformer with learned absolute positions,
# trained at one length $n$ (selective copying: $n$ noisy tokens holding 16 data tokens from a 14-token alphabet,
# then 16 markers; induction heads: $n$ tokens from 16 data tokens plus the trigger) and tested at $2n$, $4n$ (and
# $16n$ in the paper profile). Accuracy is read where the task asks for an answer: at the 16 markers for selective
# copying, at the last token for induction heads.

# %% tags=["parameters"]
profile = "paper"
tasks = None
models = None

# %%
import matplotlib.pyplot as plt
import pandas as pd

from icllib import experiments
from icllib.analysis import plotting
from icllib.analysis import report_grazzi as rg
from icllib.config import config_hash
from icllib.tasks import build_task

plotting.use_paper_style()
pd.set_option("display.width", 160)

# %% [markdown]
# ## The runs
# Two tasks × three models. In the paper profile the runs come from `results/paper/`; in the smoke profile they
# train on the CPU (120 steps, tiny models, $n = 64$ for selective copying and $n = 32$ for induction heads).

# %%
configs = rg.select(experiments.selective_copying_induction(profile), tasks=tasks, models=models)
for cfg in configs:
    print(f"{cfg.name}: blocks={len(cfg.model.layers)} d_model={cfg.model.d_model} steps={cfg.train.steps} "
          f"trained length={cfg.curriculum.points_end} test lengths={cfg.eval.extrapolate}")
results = rg.load_results(configs)
chance = {cfg.task.name: 1 / build_task(cfg.task).n_tokens for cfg in configs}

# %% [markdown]
# ## Accuracy vs test length
# Each panel is one task; each line a model's accuracy at the answer positions, at the trained length (dashed
# vertical line) and at longer test lengths (log scale). The dotted line is chance, one over the number of data
# tokens. For selective copying the length is the noisy part only (the 16 markers come on top); for induction heads
# it is the whole sequence.

# %%
fig = rg.plot_lengths(results, chance=chance)
plotting.savefig(fig, "09_selective_copying_induction", profile=profile,
                 sidecar={"params": {"tasks": tasks, "models": models},
                          "config_hashes": [config_hash(c) for c in configs]})
plt.show()

# %% [markdown]
# The same numbers, with test lengths as multiples of the trained length:

# %%
lengths = rg.length_table(results)
print(rg.wide(lengths, "scale", "value").round(3))

# %% [markdown]
# **Reading the figure.** Claim 10 holds if, at the trained length, Mamba's selective-copying accuracy is far above
# `mamba_s4`'s, and if Mamba's induction-heads accuracy stays high to the right of the dashed line. The
# Transformer's learned position table has rows beyond the trained length that never received a gradient, so the
# Mamba paper expects it to fail there.
#
# **What the paper profile shows** (committed runs, one seed; REPRODUCTION.md row 10). Induction heads reproduce:
# Mamba is at 1.000 at every test length up to 16× (4096 tokens), while `mamba_s4` falls to chance as soon as the
# prompt is longer than in training. Selective copying only partly: beyond the trained length S6 is far ahead of S4
# (1.000 vs 0.36 at 2×), but at the trained length `mamba_s4` solves it too (0.993). Our prompts are 256 tokens,
# not the paper's 4096, and a time-invariant convolution kernel can still reach every data token at that length.
# The Transformer did not learn induction heads at all in 10k steps: its training loss stayed at ln 16 (chance)
# throughout, so its curve says nothing about length generalisation. Whether that is a plateau that more steps
# would cross or a weakness of our attention setup is not yet known.
#
# **Caveats.** The paper profile trains 10k steps with ~0.45M-parameter models (the Mamba paper: 2-layer models with
# $D = 64$ for selective copying and 400k steps; induction heads at length 256 tested to $2^{20}$); we test up to
# $16n$ only. One seed. **The smoke profile** trains for 120 steps, far too few for either task: every model sits
# near chance, so its figure only shows that training, the longer test prompts and the accuracy read-out run end to
# end.
#
# ## Try this
# - Compare `mamba` and `mamba_s4` on selective copying in `metrics.jsonl` of each run (accuracy over training):
#   without selection the curve should flatten far below 1.
# - `models = ["mamba"]` and a longer `extrapolate` in `experiments.py` to push Mamba's induction heads further.

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(results)} runs; tasks: {', '.join(dict.fromkeys(r.task for r in results))}")
for r in results:
    values = lengths[(lengths.task == r.task) & (lengths.model == r.model)].value
    print(f"{r.task}/{r.model}: trained at {r.n_points}, tested at {sorted(r.extrapolation)}, metric {r.metric}, "
          f"accuracies in [0, 1]: {bool(values.between(0, 1).all())}")
