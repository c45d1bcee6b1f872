"""The training step (eager and CUDA graph) and sync-free masked losses.

CPU tests check what a graph step relies on (signatures, warm-up undo, capturable optimizer, losses without boolean
indexing). The `gpu` tests check
the graph step against the eager one on a real device (200 steps, bf16-noise tolerance).
"""

import math
from pathlib import Path

import _toy  # noqa: F401  (registers "toy_regression")
import pytest
import torch
import torch.nn.functional as F

from icllib.batch import masked_mean
from icllib.config import ConfigError, CurriculumConfig, EvalConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from icllib.models import build_model, presets
from icllib.store import RunStore
from icllib.tasks import build_task
from icllib.training.step import _restore, _snapshot, make_capturable, make_step, resolve_mode, signature
from icllib.training.train import build_optimizer, train


def _cfg(name: str = "toy", steps: int = 40, layers: tuple[str, ...] = ("attn", "mamba"), seed: int = 0,
         task: TaskConfig | None = None, curriculum: CurriculumConfig | None = None, **train_kw) -> RunConfig:
    return RunConfig(
        name=name, seed=seed,
        task=task or TaskConfig("toy_regression", n_dims=4),
        model=ModelConfig(layers=layers, d_model=16, n_heads=2),
        train=TrainConfig(steps=steps, batch_size=16, lr=3e-3, eval_every=20, ckpt_every=10, log_every=5,
                          **train_kw),
        curriculum=curriculum or CurriculumConfig(dims_start=2, dims_end=4, dims_inc=1, dims_interval=15,
                                                  points_start=5, points_end=9, points_inc=2, points_interval=15),
        eval=EvalConfig(n_examples=32, batch_size=32),
    )


# ---- sync-free losses ------------------------------------------------------------------------------------------

def test_masked_mean_equals_boolean_indexing() -> None:
    g = torch.Generator().manual_seed(0)
    values, mask = torch.randn(6, 9, generator=g), torch.rand(6, 9, generator=g) < 0.4
    assert torch.allclose(masked_mean(values, mask), values[mask].mean(), atol=1e-6)
    assert torch.isnan(masked_mean(values, torch.zeros_like(mask)))  # as values[empty].mean()


@pytest.mark.parametrize("name,n_dims,points", [("orthogonal_outlier_regression", 8, 12), ("cot_io", 6, 10),
                                                ("vector_mqar", 8, 16), ("selective_copying", 16, 24),
                                                ("induction_heads", 16, 24)])
def test_masked_losses_equal_the_boolean_indexed_definition(name: str, n_dims: int, points: int) -> None:
    task = build_task(TaskConfig(name, n_dims=n_dims))
    g = torch.Generator().manual_seed(1)
    batch = task.sample(4, points, generator=g)
    batch.loss_mask = batch.loss_mask & (torch.rand(batch.loss_mask.shape, generator=g) < 0.7)  # any mask counts
    io = task.io()
    if io.format == "tokens":
        pred = torch.randn(*batch.ys.shape, io.d_out)
        expected = F.cross_entropy(pred[batch.loss_mask], batch.ys[batch.loss_mask])
    else:
        width = io.d_mid + 1 if io.format == "triples" else io.d_out
        pred = torch.randn(*batch.loss_mask.shape, width)
        if name == "cot_io":
            k = task.hidden
            per = (pred[..., :k] - batch.extras["s"]).pow(2).sum(-1) + (pred[..., k] - batch.ys).pow(2)
        elif name == "vector_mqar":
            per = (pred - batch.ys).pow(2).mean(-1)
        else:
            per = (pred[..., 0] - batch.ys).pow(2)
        expected = per[batch.loss_mask].mean()
    assert torch.allclose(task.loss(pred, batch), expected, rtol=1e-5)


# ---- what a graph step relies on ----------------------------------------------------------------------------------

def test_step_modes() -> None:
    cpu = torch.device("cpu")
    assert resolve_mode(None, cpu) == "eager" and resolve_mode("auto", cpu) == "eager"
    with pytest.raises(ConfigError, match="step mode: 'graph' needs a CUDA device"):
        resolve_mode("graph", cpu)
    with pytest.raises(ConfigError, match="step mode: 'fast' is not one of auto, eager, graph"):
        resolve_mode("fast", cpu)


def test_signature_changes_with_shapes_and_meta_only() -> None:
    task = build_task(TaskConfig("linear_regression", n_dims=8))
    g = torch.Generator().manual_seed(0)
    a, b = task.sample(4, 5, 3, generator=g), task.sample(4, 5, 6, generator=g)
    assert signature(a) == signature(b)  # same shapes: the active dims live in the values
    assert signature(a) != signature(task.sample(4, 7, 3, generator=g))
    cot = build_task(TaskConfig("cot_io", n_dims=6))
    assert signature(cot.sample(4, 5, 3, generator=g)) != signature(cot.sample(4, 5, 4, generator=g))  # meta


def test_warmup_is_undone_exactly() -> None:
    cfg = _cfg()
    model = build_model(cfg.model, build_task(cfg.task).io(), seed=0)
    opt = build_optimizer(cfg, model, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    saved = _snapshot(model, opt)
    step = make_step(model, build_task(cfg.task), opt, cfg, torch.device("cpu"), "eager")
    batch = build_task(cfg.task).sample(8, 5, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        step(batch)
    assert opt.state and any(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    _restore(model, opt, saved)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    for state in opt.state.values():  # created by the warm-up: back to Adam's fresh state
        assert all(float(v.abs().sum()) == 0 for v in state.values())
    # and a restored optimizer continues like a fresh one: the next step equals a fresh model's first step
    fresh = build_model(cfg.model, build_task(cfg.task).io(), seed=0)
    fresh_opt = build_optimizer(cfg, fresh, torch.device("cpu"))
    make_step(fresh, build_task(cfg.task), fresh_opt, cfg, torch.device("cpu"), "eager")(batch)
    step(batch)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), fresh.parameters(), strict=True))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_capturable_optimizer_follows_the_schedule() -> None:
    cfg = _cfg(warmup_steps=4)
    model = build_model(cfg.model, build_task(cfg.task).io(), seed=0)
    opt = build_optimizer(cfg, model, torch.device("cpu"))
    make_capturable(opt, torch.device("cpu"))
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and opt.param_groups[0]["capturable"]
    from icllib.training.train import lr_lambda

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(cfg.train.lr * 2 / 4)  # filled in place


def test_icllib_compile_compiles_without_changing_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$ICLLIB_COMPILE=1: same config hash and store path, a compiled model, the same losses (fp32, tolerance 1e-4
    relative: fused kernels may round differently), and provenance that says so."""
    cfg = _cfg("c", steps=6, layers=("attn",))
    plain = train(cfg, RunStore(tmp_path / "plain"), device="cpu", progress=False)
    monkeypatch.setenv("ICLLIB_COMPILE", "1")
    compiled = train(cfg, RunStore(tmp_path / "compiled"), device="cpu", progress=False)
    assert compiled.hash == plain.hash
    assert compiled.read_json("provenance.json")["step_mode"] == "eager+compile"
    assert [s["step_mode"] for s in compiled.read_json("provenance.json")["segments"]] == ["eager+compile"]
    assert plain.read_json("provenance.json")["step_mode"] == "eager"
    for a, b in zip(plain.metrics(), compiled.metrics(), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)


# ---- on a GPU -----------------------------------------------------------------------------------------------------

def _losses(cfg: RunConfig, mode: str) -> list[float]:
    from icllib.repro import train_generator

    device = torch.device("cuda")
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.io(), seed=cfg.seed).to(device)
    opt = build_optimizer(cfg, model, device)
    step = make_step(model, task, opt, cfg, device, mode)
    gen = train_generator(cfg.seed)
    losses = [step(task.sample(cfg.train.batch_size, 11 + 10 * (i // 100), generator=gen)) for i in range(200)]
    return torch.stack(losses).cpu().tolist()


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["transformer", "mamba", "mambaformer", "standard_hybrid"])
def test_graph_step_follows_the_eager_loss_curve(preset: str) -> None:
    task = TaskConfig("toy_regression", n_dims=20, kwargs={"shared_w": True})  # learnable within 200 steps
    cfg = RunConfig(name="g", task=task, model=presets.PRESETS[preset]("paper"),
                    train=TrainConfig(steps=200, batch_size=64, lr=1e-3, precision="bf16"))
    eager, graph = _losses(cfg, "eager"), _losses(cfg, "graph")  # two shapes: one re-capture at step 100
    assert eager[0] == pytest.approx(graph[0], rel=2e-2)  # the same first batch and weights
    tail_e, tail_g = sum(eager[-50:]) / 50, sum(graph[-50:]) / 50
    assert tail_e < 0.9 * sum(eager[:10]) / 10  # the model is learning ...
    assert abs(math.log(tail_g / tail_e)) < math.log(1.5), (tail_e, tail_g)  # ... and the graph step alike


@pytest.mark.gpu
def test_graph_training_resumes_and_matches_eager(tmp_path: Path) -> None:
    cfg = _cfg(steps=60)
    eager = train(cfg, RunStore(tmp_path / "eager"), device="cuda", progress=False, step_mode="eager")
    store = RunStore(tmp_path / "graph")
    train(cfg, store, device="cuda", progress=False, step_mode="graph", stop_after=23)
    graph = train(cfg, store, device="cuda", progress=False, step_mode="graph")
    assert graph.read_json("provenance.json")["step_mode"] == "graph"
    e, g = [r["loss_mean"] for r in eager.metrics()], [r["loss_mean"] for r in graph.metrics()]
    assert len(e) == len(g) == 12
    assert all(abs(a - b) <= 1e-3 * max(1.0, abs(a)) for a, b in zip(e, g, strict=True)), (e, g)


@pytest.mark.gpu
def test_compiled_graph_training_follows_the_plain_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$ICLLIB_COMPILE=1 inside the CUDA graph (Mamba + attention, two curriculum shapes): losses within 1e-3."""
    cfg = _cfg(steps=40, layers=("mamba", "attn"))
    plain = train(cfg, RunStore(tmp_path / "plain"), device="cuda", progress=False, step_mode="graph")
    monkeypatch.setenv("ICLLIB_COMPILE", "1")
    compiled = train(cfg, RunStore(tmp_path / "compiled"), device="cuda", progress=False, step_mode="graph")
    assert compiled.read_json("provenance.json")["step_mode"] == "graph+compile"
    e, g = [r["loss_mean"] for r in plain.metrics()], [r["loss_mean"] for r in compiled.metrics()]
    assert len(e) == len(g) == 8
    assert all(abs(a - b) <= 1e-3 * max(1.0, abs(a)) for a, b in zip(e, g, strict=True)), (e, g)
