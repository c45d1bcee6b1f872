"""One function per figure: `experiment(profile) -> list[RunConfig]`.

Notebooks and `icl sweep <experiment>` call the same functions, so a figure and its batch job can never disagree.

    smoke : CPU-sized (tiny models, a few hundred steps) so every notebook executes in CI
    paper : reduced compute for one GPU; each reduction is listed in the function's docstring
    full  : the papers' sizes and step counts; configs only, meant for a SLURM cluster

Shared conventions: Adam, constant lr, batch 64, gradient clip 10, fp32 (Park et al.'s code); curricula keep the
official start/end/increment and compress the interval in proportion to the number of steps, so full dims and
points are reached at the same fraction of training as in the 500k-step original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from icllib.config import (
    PROFILES,
    ConfigError,
    CurriculumConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
)
from icllib.models import presets
from icllib.registry import Registry

EXPERIMENTS: Registry[Callable[[str], list[RunConfig]]] = Registry("experiment")

ORIGINAL_STEPS = 500_000  # Park et al. and Grazzi et al. train every task for 500k steps (many-outlier: 1M)

# per-profile bookkeeping: steps multiplier, eval prompts, eval/ckpt cadence
_SMOKE_STEPS = 120
_EVAL = {"smoke": EvalConfig(n_examples=128), "paper": EvalConfig(n_examples=1280), "full": EvalConfig()}


def _check(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(f"profile: {profile!r} is not one of {', '.join(PROFILES)}")


def _steps(profile: str, paper: int, full: int = ORIGINAL_STEPS) -> int:
    return {"smoke": _SMOKE_STEPS, "paper": paper, "full": full}[profile]


def _train(profile: str, steps: int, lr: float, evals: int = 20, **kw: object) -> TrainConfig:
    """Train settings with `evals` evaluations (and checkpoints) spread over the run."""
    every = max(1, steps // evals)
    batch = 16 if profile == "smoke" else 64
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, eval_every=every, ckpt_every=every,
                       log_every=max(1, every // 5), **kw)


def curriculum(dims: tuple[int, int, int], points: tuple[int, int, int], steps: int,
               original_steps: int = ORIGINAL_STEPS, interval: int = 2000,
               dims_interval: int | None = None) -> CurriculumConfig:
    """Official (start, end, inc) schedules with the intervals scaled by steps / original_steps (at least 1).

    `interval` is the official points interval, and the dims interval too unless `dims_interval` is given.
    """
    def scale(every: int) -> int:
        return max(1, round(every * steps / original_steps))

    return CurriculumConfig(dims_start=dims[0], dims_end=dims[1], dims_inc=dims[2],
                            dims_interval=scale(interval if dims_interval is None else dims_interval),
                            points_start=points[0], points_end=points[1], points_inc=points[2],
                            points_interval=scale(interval))


def fixed(n_dims: int, n_points: int) -> CurriculumConfig:
    """No curriculum: always `n_dims` active dims and `n_points` points."""
    return CurriculumConfig(dims_start=n_dims, dims_end=n_dims, points_start=n_points, points_end=n_points)


@dataclass(frozen=True)
class TaskRow:
    """One task's training recipe in one profile: everything a run takes from its task rather than its model.

    The per-task exceptions to the shared conventions live here, on the task's row, not as name checks in `_run`:
    `clip`, the gradient-norm clip (vector MQAR's row sets 100, every other task keeps the conventional 10), and
    `evals`, the number of evaluations and checkpoints spread over the run (sparse parity's rows set `_PARITY_EVALS`).
    """

    task: TaskConfig
    curriculum: CurriculumConfig
    lr: float
    steps: int
    clip: float = 10.0
    evals: int = 20


# The architectures compared in Park et al. (presets.py pins their sizes per profile).
PARK_MODELS: dict[str, Callable[..., ModelConfig]] = {
    "transformer": presets.transformer,
    "mamba": presets.mamba,
    "mambaformer": presets.mambaformer,
    "standard_hybrid": presets.standard_hybrid,
    "mamba_s4": presets.mamba_s4,
}
GRAZZI_MODELS: dict[str, Callable[..., ModelConfig]] = {
    "transformer": presets.transformer,
    "mamba": presets.mamba,
    "s4d": presets.s4d,
    "rwkv": presets.rwkv,
}


def _model(factory: Callable[..., ModelConfig], profile: str, **overrides: object) -> ModelConfig:
    cfg = factory(scale=profile)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ----------------------------------------------------------------------------------------------------------------
# Park et al. task families

def _many_outlier(profile: str) -> tuple[CurriculumConfig, int]:
    """Many-outlier regression's curriculum and steps: officially 1M steps, dims 4→20 +1 every 2000 steps and
    points 12→512 +2 every 200, so prompts reach full length at 5% of training.

    The paper profile's prompts hold 256 points instead of 512 (the first reduction to make when GPU time is short;
    p = 0.9 keeps ~26 clean pairs): a 512-point prompt is 1024 tokens, 5x a 101-point run's, whose sweeps are
    already GPU-bound, and the paper profile is over its GPU budget. Its points interval is doubled, so the
    shorter end is still reached at 5% of training (step 1464 of 30k).
    """
    if profile == "smoke":  # shorter prompts so CPU runs stay in seconds
        return curriculum((4, 20, 1), (12, 64, 2), _SMOKE_STEPS, interval=200), _SMOKE_STEPS
    steps = _steps(profile, 30_000, full=1_000_000)
    points, interval = ((12, 256, 2), 400) if profile == "paper" else ((12, 512, 2), 200)
    return curriculum((4, 20, 1), points, steps, original_steps=1_000_000, interval=interval,
                      dims_interval=2000), steps


# Every sparse-parity run is evaluated this many times, so that the parity cells of the results grid, the S4-vs-S6
# figure and the accuracy-vs-iterations figure are the same runs (same config hash: trained once, stored once).
_PARITY_EVALS = {"smoke": 20, "paper": 40, "full": 40}


def _park_tasks(profile: str) -> dict[str, TaskRow]:
    """The nine Park et al. families: task, curriculum, lr, steps, clip and evals in this profile."""
    lr_steps, long_steps = _steps(profile, 20_000), _steps(profile, 30_000)
    outlier_cur, outlier_steps = _many_outlier(profile)
    out = {
        "linear_regression": TaskRow(TaskConfig("linear_regression", n_dims=20),
                                     curriculum((5, 20, 1), (11, 41, 2), lr_steps), 1e-4, lr_steps),
        "sparse_linear_regression": TaskRow(TaskConfig("sparse_linear_regression", n_dims=20),
                                            curriculum((5, 20, 1), (11, 41, 2), lr_steps), 1e-4, lr_steps),
        "relu_2nn_regression": TaskRow(TaskConfig("relu_2nn_regression", n_dims=20),
                                       curriculum((5, 20, 1), (26, 101, 5), long_steps), 1e-4, long_steps),
        "decision_tree": TaskRow(TaskConfig("decision_tree", n_dims=20),
                                 curriculum((5, 20, 1), (26, 101, 5), long_steps), 4e-4, long_steps),
        "orthogonal_outlier_regression": TaskRow(TaskConfig("orthogonal_outlier_regression", n_dims=20),
                                                 curriculum((5, 20, 1), (26, 101, 5), long_steps), 1e-4, long_steps),
        "many_outlier_regression": TaskRow(TaskConfig("many_outlier_regression", n_dims=20), outlier_cur, 1e-4,
                                           outlier_steps),
        "sparse_parity": TaskRow(TaskConfig("sparse_parity", n_dims=10), fixed(10, 140), 4e-4, long_steps,
                                 evals=_PARITY_EVALS[profile]),
        "cot_io": TaskRow(TaskConfig("cot_io", n_dims=10), curriculum((10, 10, 0), (26, 101, 5), long_steps), 1e-4,
                          long_steps),
        "vector_mqar": TaskRow(TaskConfig("vector_mqar", n_dims=20), fixed(20, 64), 2e-4, lr_steps, clip=100.0),
    }
    if profile == "smoke":  # shorter prompts so CPU runs stay in seconds
        out["sparse_parity"] = dataclasses.replace(out["sparse_parity"], curriculum=fixed(10, 40), steps=_SMOKE_STEPS)
        out["vector_mqar"] = dataclasses.replace(out["vector_mqar"], curriculum=fixed(20, 16), steps=_SMOKE_STEPS)
    return out


def _run(name: str, profile: str, row: TaskRow, model: ModelConfig, seed: int = 0, **train_kw: object) -> RunConfig:
    """The run of `model` on `row`'s task, curriculum, lr, steps, clip and evals; `train_kw` adds TrainConfig fields."""
    train = _train(profile, row.steps, row.lr, evals=row.evals, grad_clip=row.clip, **train_kw)
    return RunConfig(name=name, profile=profile, task=row.task, model=model, curriculum=row.curriculum, seed=seed,
                     train=train, eval=_EVAL[profile])


@EXPERIMENTS.register("tour")
def tour(profile: str) -> list[RunConfig]:
    """00_tour: linear regression, Transformer and Mamba (paper: 20k steps instead of 500k)."""
    _check(profile)
    row = _park_tasks(profile)["linear_regression"]
    return [_run(f"tour_{m}", profile, row, _model(PARK_MODELS[m], profile))
            for m in ("transformer", "mamba")]


@EXPERIMENTS.register("results_grid")
def results_grid(profile: str) -> list[RunConfig]:
    """02_results_grid: every Park model × every Park task family, one seed.

    paper reductions: 20k steps (LR, sparse LR, MQAR) and 30k (others) instead of 500k (1M for many-outlier);
    curriculum intervals scaled accordingly; many-outlier prompts of 256 points instead of 512 (`_many_outlier`);
    models at the repo's sample sizes (D=128, TF 2 layers, Mamba 4 blocks).
    """
    _check(profile)
    return [
        _run(f"grid_{t}_{m}", profile, row, _model(factory, profile))
        for t, row in _park_tasks(profile).items()
        for m, factory in PARK_MODELS.items()
    ]


@EXPERIMENTS.register("parity_s4_vs_s6")
def parity_s4_vs_s6(profile: str) -> list[RunConfig]:
    """03: sparse parity for Mamba (S6), Mamba without selection (S4), Transformer and MambaFormer; 2 seeds.

    paper reductions: 30k steps instead of 500k. These runs are a subset of `parity_training_speed`'s.
    """
    _check(profile)
    row = _park_tasks(profile)["sparse_parity"]
    models = ("mamba", "mamba_s4", "transformer", "mambaformer")
    return [_run(f"parity_{m}_s{seed}", profile, row, _model(PARK_MODELS[m], profile), seed=seed)
            for m in models for seed in range(2)]


@EXPERIMENTS.register("parity_training_speed")
def parity_training_speed(profile: str) -> list[RunConfig]:
    """04: sparse parity accuracy vs iterations for every Park model, 3 seeds, evaluated 40 times per run (smoke 20).

    paper reductions: 30k steps instead of 500k. Seed 0 is the results grid's parity column; seeds 0–1 of Mamba,
    Mamba-S4, Transformer and MambaFormer are `parity_s4_vs_s6`.
    """
    _check(profile)
    row = _park_tasks(profile)["sparse_parity"]
    return [_run(f"paritycurve_{m}_s{seed}", profile, row, _model(f, profile), seed=seed)
            for m, f in PARK_MODELS.items() for seed in range(3)]


@EXPERIMENTS.register("cot_channel_scaling")
def cot_channel_scaling(profile: str) -> list[RunConfig]:
    """05: CoT-I/O for Transformer, Mamba, MambaFormer at several channel widths (d_model).

    paper reductions: 30k steps; widths {32, 64, 128} instead of the paper's (unverified) grid.
    """
    _check(profile)
    row = _park_tasks(profile)["cot_io"]
    widths = (16, 32) if profile == "smoke" else (32, 64, 128, 256) if profile == "full" else (32, 64, 128)
    return [_run(f"cot_{m}_d{w}", profile, row, _model(PARK_MODELS[m], profile, d_model=w))
            for m in ("transformer", "mamba", "mambaformer") for w in widths]


@EXPERIMENTS.register("mqar")
def mqar(profile: str) -> list[RunConfig]:
    """06: vector-valued MQAR for Transformer, Mamba, MambaFormer vs width and number of key-value pairs.

    paper reductions: 20k steps; widths {64, 128}; KV pairs {16, 32, 64}.
    """
    _check(profile)
    row = _park_tasks(profile)["vector_mqar"]  # its curriculum is replaced by each KV-pair count's
    pairs = (8, 16) if profile == "smoke" else (16, 32, 64)
    widths = (32,) if profile == "smoke" else (64, 128)
    return [_run(f"mqar_{m}_d{w}_kv{k}", profile, dataclasses.replace(row, curriculum=fixed(20, k)),
                 _model(PARK_MODELS[m], profile, d_model=w))
            for m in ("transformer", "mamba", "mambaformer") for w in widths for k in pairs]


# ----------------------------------------------------------------------------------------------------------------
# Grazzi et al. and the Mamba paper

# Grazzi et al.'s lr; S4D trains at `_GRAZZI_S4D_LR` (a model exception, so it is applied per model, not per task)
_GRAZZI_LR, _GRAZZI_S4D_LR = 1e-4, 1e-3


def _grazzi_tasks(profile: str) -> dict[str, TaskRow]:
    """Grazzi et al.'s regression variants: task, curriculum, lr and steps in this profile."""
    lr_steps, long_steps = _steps(profile, 20_000), _steps(profile, 30_000)
    reg = curriculum((5, 20, 1), (11, 41, 2), lr_steps)
    long = curriculum((5, 20, 1), (26, 101, 5), long_steps)
    return {
        "linear_regression": TaskRow(TaskConfig("linear_regression"), reg, _GRAZZI_LR, lr_steps),
        "skewed_linear_regression": TaskRow(TaskConfig("skewed_linear_regression"), reg, _GRAZZI_LR, lr_steps),
        "noisy_linear_regression": TaskRow(TaskConfig("noisy_linear_regression"), reg, _GRAZZI_LR, lr_steps),
        "sparse_linear_regression": TaskRow(TaskConfig("sparse_linear_regression"), reg, _GRAZZI_LR, lr_steps),
        "relu_2nn_regression": TaskRow(TaskConfig("relu_2nn_regression"), long, _GRAZZI_LR, long_steps),
        "decision_tree": TaskRow(TaskConfig("decision_tree"), long, _GRAZZI_LR, long_steps),
    }


@EXPERIMENTS.register("regression_variants_extrapolation")
def regression_variants_extrapolation(profile: str) -> list[RunConfig]:
    """07: Grazzi et al. — Transformer (no PE), Mamba, S4D, RWKV on regression variants; eval at 2× and 4× length.

    Cosine lr schedule as in Grazzi et al. (lr 1e-4; S4D 1e-3). paper reductions: 20k/30k steps instead of 500k.
    The Transformer and Mamba runs also fit per-layer probes at the end, so that `probing` (08) reuses them.
    """
    _check(profile)
    out = []
    for t, row in _grazzi_tasks(profile).items():
        n = row.curriculum.points_end
        ev = dataclasses.replace(_EVAL[profile], extrapolate=(2 * n, 4 * n))
        for m, factory in GRAZZI_MODELS.items():
            model_row = dataclasses.replace(row, lr=_GRAZZI_S4D_LR) if m == "s4d" else row
            model = _model(factory, profile, pos_emb=False) if m == "transformer" else _model(factory, profile)
            run = _run(f"grazzi_{t}_{m}", profile, model_row, model, schedule="cosine")
            out.append(dataclasses.replace(run, eval=dataclasses.replace(ev, probe=m in ("transformer", "mamba"))))
    return out


@EXPERIMENTS.register("probing")
def probing(profile: str) -> list[RunConfig]:
    """08: per-layer probes of Transformer and Mamba trained on skewed LR, 2NN and DT (probes run at the end).

    These are the corresponding runs of `regression_variants_extrapolation` (same configs, trained once).
    """
    _check(profile)
    tasks = ("skewed_linear_regression", "relu_2nn_regression", "decision_tree")
    runs = {(c.task.name, c.name.rsplit("_", 1)[-1]): c for c in regression_variants_extrapolation(profile)}
    return [runs[(t, m)] for t in tasks for m in ("transformer", "mamba")]


@EXPERIMENTS.register("selective_copying_induction")
def selective_copying_induction(profile: str) -> list[RunConfig]:
    """09: selective copying (S4-Mamba vs Mamba vs attention) and induction heads (length generalisation)."""
    _check(profile)
    steps = _steps(profile, 10_000, 400_000)
    out = []
    for t, n in (("selective_copying", 64 if profile == "smoke" else 256), ("induction_heads", 32 if profile ==
                                                                            "smoke" else 256)):
        ev = dataclasses.replace(_EVAL[profile], extrapolate=(2 * n, 4 * n) if profile == "smoke" else
                                 (2 * n, 4 * n, 16 * n))
        longest = max(ev.extrapolate)
        for m, factory in (("mamba", presets.mamba), ("mamba_s4", presets.mamba_s4),
                           ("transformer", presets.transformer)):
            # the Transformer's learned position table must cover the longest test prompt; rows beyond the trained
            # length stay at their initialisation, which is the point of the length-generalisation test
            sizes = {"max_len": max(presets.MAX_LEN, longest + 16)} if m == "transformer" else {}  # + n_memorize
            row = TaskRow(TaskConfig(t, n_dims=16), fixed(16, n), 1e-3, steps)
            run = _run(f"{t}_{m}", profile, row, _model(factory, profile, **sizes))
            out.append(dataclasses.replace(run, eval=ev))
    return out
