"""Training-step speed: eager vs CUDA-graph step per preset and scale, vs sequence length, and sweeps of 8 runs.

    PYTHONPATH=. python kernels/bench_train_step.py --out kernels/results/2026-12-02-h200-train_step.json
    PYTHONPATH=. python kernels/bench_train_step.py --parts steps sweep --out ...

Prints one JSON row per measurement and writes all rows (with provenance) to --out after every part, so a run cut
short keeps what it measured. Parts:

  steps    every preset × scale (smoke, paper, full) × step mode (eager, graph), linear regression d=20, batch 64,
           41 points (82 tokens), fp32, Adam (fused), clip 10, the full host loop (sampling on the CPU included).
           ms_median: median over `--steps` steps (after warm-up) of the CUDA-event interval between consecutive
           steps, i.e. the step time as training sees it; ms_wall: wall time / steps; replay_ms (graph only): the
           captured graph replayed back to back without sampling, i.e. the GPU's share.
  backends mamba presets with the pure-torch reference scan instead of Triton (paper and full scale, both modes).
  precision the four target presets (transformer, mamba, mambaformer, standard_hybrid) at full scale in TF32 and
           bf16 autocast, eager and graph.
  compile  the four target presets at full scale, bf16, with torch.compile inside the graph (compile time included
           in setup_s).
  lengths  transformer and mamba at full scale vs tokens 82 → 4098, batch 16, fp32, eager and graph.
  profile  kernels of one graph replay of the four target presets at full scale (fp32, bf16): count, device time
           per category (matmul, scan, attention, optimizer, reduction, elementwise/other), top kernels.
  host     cProfile of `train_many` on 12 paper runs of 07 for --host-seconds, reading batches ahead or not.
  park     the five Park presets at paper scale (graph mode) at --park-tokens, fp32 / TF32 / torch.compile: what
           the remaining 02–06 sweeps would gain from each.
  overlap  K paper-scale graph steps (280 tokens) replayed one stream after another vs all K streams in flight: how
           much the GPU overlaps different runs' graphs, without the host in the way.
  sweep    --sweep-runs identical small runs (default 8; Mamba, paper scale, 1000 steps, one seed each): `train` one
           after another vs `train_many` (8 CUDA streams, one process; `train_many_k<N>`: N streams) vs
           `sweep.run(executor="local", jobs_per_gpu=8)` (8 processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icllib.config import CurriculumConfig, EvalConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from icllib.models import build_model, presets  # noqa: E402
from icllib.repro import provenance, train_generator  # noqa: E402
from icllib.runs.interleave import train_many  # noqa: E402
from icllib.store import RunStore  # noqa: E402
from icllib.tasks import build_task  # noqa: E402
from icllib.training.step import make_step  # noqa: E402
from icllib.training.train import build_optimizer, lr_lambda, train  # noqa: E402

TARGETS = ("transformer", "mamba", "mambaformer", "standard_hybrid")
PARK = (*TARGETS, "mamba_s4")
ROWS: list[dict[str, Any]] = []


def emit(row: dict[str, Any]) -> None:
    ROWS.append(row)
    print(json.dumps(row), flush=True)


def run_config(model, steps: int = 1000, n_points: int = 41, batch: int = 64, seed: int = 0, **train_kw) -> RunConfig:
    return RunConfig(
        name=f"bench_s{seed}", seed=seed, task=TaskConfig("linear_regression", n_dims=20), model=model,
        train=TrainConfig(steps=steps, batch_size=batch, lr=1e-4, grad_clip=10.0, eval_every=steps, ckpt_every=steps,
                          log_every=100, **train_kw),
        curriculum=CurriculumConfig(dims_start=20, dims_end=20, points_start=n_points, points_end=n_points),
        eval=EvalConfig(n_examples=640),
    )


def time_steps(cfg: RunConfig, mode: str, steps: int, warmup: int = 10) -> dict[str, Any]:
    """Per-step time of the training step as `train` drives it (host sampling + step + lr schedule)."""
    device = torch.device("cuda")
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.io(), seed=0).to(device)
    opt = build_optimizer(cfg, model, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    t0 = time.perf_counter()
    step = make_step(model, task, opt, cfg, device, mode)
    gen = train_generator(0)
    b, n = cfg.train.batch_size, cfg.curriculum.points_end
    for _ in range(warmup):
        step(task.sample(b, n, generator=gen))
        sched.step()
    torch.cuda.synchronize()
    setup_s = time.perf_counter() - t0
    events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    events[0].record()
    t0 = time.perf_counter()
    for i in range(steps):
        step(task.sample(b, n, generator=gen))
        sched.step()
        events[i + 1].record()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    intervals = [events[i].elapsed_time(events[i + 1]) for i in range(steps)]
    out: dict[str, Any] = {"ms_median": round(statistics.median(intervals), 4), "ms_wall": round(1e3 * wall / steps, 4),
                           "setup_s": round(setup_s, 2), "tokens_per_s": round(b * 2 * n * steps / wall),
                           "params": sum(p.numel() for p in model.parameters())}
    if mode == "graph":
        graph = step._graph
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            graph.replay()
        stop.record()
        torch.cuda.synchronize()
        out["replay_ms"] = round(start.elapsed_time(stop) / 50, 4)
    return out


def part_steps(args) -> None:
    for scale in ("smoke", "paper", "full"):
        for name, factory in presets.PRESETS.items():
            for mode in ("eager", "graph"):
                measure(kind="step", preset=name, scale=scale, mode=mode, backend="auto",
                        cfg=run_config(factory(scale)), steps=args.steps)


def part_backends(args) -> None:
    for scale in ("paper", "full"):
        for name in ("mamba", "mambaformer"):
            model = dataclasses.replace(presets.PRESETS[name](scale), scan_backend="ref")
            for mode in ("eager", "graph"):
                measure(kind="backend", preset=name, scale=scale, mode=mode, backend="ref", cfg=run_config(model),
                        steps=min(args.steps, 40), warmup=3)  # the reference scan is a loop over L: slow eager


def part_precision(args) -> None:
    for name in TARGETS:
        for precision in ("tf32", "bf16"):
            for mode in ("eager", "graph"):
                measure(kind="precision", preset=name, scale="full", mode=mode, backend="auto",
                        cfg=run_config(presets.PRESETS[name]("full"), precision=precision), steps=args.steps)


def part_compile(args) -> None:
    for name in TARGETS:
        measure(kind="compile", preset=name, scale="full", mode="graph", backend="auto", compile=True,
                cfg=run_config(presets.PRESETS[name]("full"), compile=True, precision="bf16"), steps=args.steps)


def part_park(args) -> None:
    """The GPU share of one step of the runs Park et al.'s notebooks (02–06) still need: every Park preset at paper
    scale, graph mode, on linear-regression batches of --park-tokens tokens (82: the regression families; 280: the
    length of sparse parity's 140 points), as the sweep trains it (fp32), with TF32 matmuls, and with torch.compile
    inside the graph (compile time in setup_s)."""
    variants = {"fp32": ("fp32", False), "tf32": ("tf32", False), "compile": ("fp32", True)}
    for tokens in args.park_tokens:
        for name in args.park_presets:
            for variant in args.park_variants:
                precision, compiled = variants[variant]
                cfg = run_config(presets.PRESETS[name]("paper"), n_points=tokens // 2, precision=precision,
                                 compile=compiled)
                measure(kind="park", preset=name, scale="paper", mode="graph", backend="auto", variant=variant,
                        cfg=cfg, steps=args.steps)


def part_overlap(args) -> None:
    """Do graph replays of different runs overlap on the GPU? K paper-scale runs (--overlap-preset, 280 tokens), each
    captured as its graph step on its own stream; then `--steps` rounds of replaying all K graphs (no host sampling):
    one stream after another (each synchronised) vs all K streams in flight. ratio = serial / concurrent time."""
    device = torch.device("cuda")
    for k in args.overlap_runs:
        cfg = run_config(presets.PRESETS[args.overlap_preset]("paper"), n_points=140)
        task = build_task(cfg.task)
        graphs, streams = [], []
        for seed in range(k):
            model = build_model(cfg.model, task.io(), seed=seed).to(device)
            opt = build_optimizer(cfg, model, device)
            stream = torch.cuda.Stream(device)
            with torch.cuda.stream(stream):
                step = make_step(model, task, opt, cfg, device, "graph")
                step(task.sample(cfg.train.batch_size, 140, generator=train_generator(seed)))
            graphs.append(step)
            streams.append(stream)
        torch.cuda.synchronize()
        row: dict[str, Any] = {"kind": "overlap", "preset": args.overlap_preset, "scale": "paper", "tokens": 280,
                               "runs": k, "rounds": args.steps}
        for how in ("serial", "concurrent"):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                for step, stream in zip(graphs, streams, strict=True):
                    with torch.cuda.stream(stream):
                        step._graph.replay()
                    if how == "serial":
                        stream.synchronize()
            torch.cuda.synchronize()
            row[f"{how}_ms_per_round"] = round(1e3 * (time.perf_counter() - t0) / args.steps, 3)
        row["ratio"] = round(row["serial_ms_per_round"] / row["concurrent_ms_per_round"], 2)
        emit(row)
        del graphs
        torch.cuda.empty_cache()


def part_lengths(args) -> None:
    for name in ("transformer", "mamba"):
        for n_points in (41, 129, 513, 2049):
            model = dataclasses.replace(presets.PRESETS[name]("full"), max_len=4 * n_points)
            for mode in ("eager", "graph"):
                measure(kind="length", preset=name, scale="full", mode=mode, backend="auto", batch=16,
                        cfg=run_config(model, n_points=n_points, batch=16), steps=max(30, args.steps // 5), warmup=3)


def measure(cfg: RunConfig, steps: int, warmup: int = 10, **row: Any) -> None:
    row = {**row, "precision": cfg.train.precision, "batch": cfg.train.batch_size,
           "tokens": 2 * cfg.curriculum.points_end}
    try:
        row.update(time_steps(cfg, row["mode"], steps, warmup))
    except Exception as e:  # a row that fails is recorded, not fatal
        row["error"] = f"{type(e).__name__}: {e}"[:400]
        traceback.print_exc()
    torch.cuda.empty_cache()
    emit(row)


KERNEL_KINDS = (  # (category, substrings of a kernel name), first match wins
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("scan", ("selective", "scan")),
    ("attention", ("flash", "fmha", "attention", "sdpa", "efficient")),
    ("matmul", ("gemm", "cutlass", "sm90", "sm80", "cublas", "nvjet", "splitk")),
    ("reduction", ("reduce", "norm", "sum", "softmax")),
)


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "elementwise/other")


def part_profile(args) -> None:
    """Kernels of one graph replay (full scale): count, total device time, time per category, top kernels."""
    from torch.profiler import ProfilerActivity, profile

    for precision in args.profile_precisions:
        for name in args.profile_presets:
            cfg = run_config(presets.PRESETS[name]("full"), precision=precision)
            device = torch.device("cuda")
            task = build_task(cfg.task)
            model = build_model(cfg.model, task.io(), seed=0).to(device)
            opt = build_optimizer(cfg, model, device)
            step = make_step(model, task, opt, cfg, device, "graph")
            gen = train_generator(0)
            for _ in range(3):
                step(task.sample(64, 41, generator=gen))
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step._graph.replay()
                torch.cuda.synchronize()
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            by_name: dict[str, list[float]] = {}
            by_kind: dict[str, float] = {}
            for e in kernels:
                by_name.setdefault(e.name[:90], []).append(e.device_time)
                by_kind[kernel_kind(e.name)] = by_kind.get(kernel_kind(e.name), 0.0) + e.device_time
            top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:10]
            emit({"kind": "profile", "preset": name, "scale": "full", "mode": "graph", "precision": precision,
                  "kernels": len(kernels), "kernel_us_total": round(sum(e.device_time for e in kernels), 1),
                  "us_by_kind": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                  "top": [{"name": k, "count": len(v), "us": round(sum(v), 1)} for k, v in top]})
            del step, opt, model
            torch.cuda.empty_cache()


def part_sweep(args) -> None:
    configs = [run_config(presets.mamba("paper"), steps=args.sweep_steps, seed=s) for s in range(args.sweep_runs)]
    with tempfile.TemporaryDirectory() as tmp:
        for how in args.sweep_hows:
            store = RunStore(Path(tmp) / how)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            concurrency = int(how.split("_k")[1]) if how.startswith("train_many_k") else 8
            row: dict[str, Any] = {"kind": "sweep", "how": how, "runs": len(configs), "steps": args.sweep_steps,
                                   "preset": "mamba", "scale": "paper", "mode": "graph"}
            try:
                if how == "sequential":
                    for cfg in configs:
                        train(cfg, store, device="cuda", progress=False)
                elif how.startswith("train_many"):  # train_many (8 streams) or train_many_k<N> (N streams)
                    row["concurrency"] = concurrency
                    train_many(configs, store, device="cuda", concurrency=concurrency)
                else:
                    from icllib.runs import sweep

                    sweep.run(configs, "local", store=store, jobs_per_gpu=8, folder=Path(tmp) / "submitit")
                torch.cuda.synchronize()
                row["wall_s"] = round(time.perf_counter() - t0, 2)
                row["final_eval"] = [round(store.get(c).read_json("eval.json")["curve"]["mean"][-1], 4)
                                     for c in configs]
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"[:400]
                traceback.print_exc()
            emit(row)
    walls = {r["how"]: r.get("wall_s") for r in ROWS if r.get("kind") == "sweep"}
    if walls.get("sequential"):
        for how, wall in walls.items():
            if wall:
                print(json.dumps({"kind": "sweep_speedup", "how": how, "vs_sequential": round(walls["sequential"]
                                                                                             / wall, 2)}))


def part_host(args) -> None:
    """Where the host's time goes in `train_many`: the runs 07 still needs (sparse LR, 2NN, DT × 4 models), trained
    for `--host-seconds` under cProfile, with and without reading batches ahead in worker threads."""
    import cProfile
    import pstats

    from icllib.experiments import EXPERIMENTS

    configs = [c for c in EXPERIMENTS.get("regression_variants_extrapolation")("paper")
               if c.task.name in ("sparse_linear_regression", "relu_2nn_regression", "decision_tree")]
    for read_ahead in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(tmp)
            prof = cProfile.Profile()
            cpu0, t0 = time.process_time(), time.perf_counter()
            prof.enable()
            runs = train_many(configs, store, device="cuda", concurrency=len(configs),
                              time_limit_s=args.host_seconds, read_ahead=read_ahead)
            prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            steps = sum(r.status().get("step", 0) for r in runs)
            stats = pstats.Stats(prof)
            top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:25]  # by own time
            emit({"kind": "host", "read_ahead": read_ahead, "runs": len(configs), "wall_s": round(wall, 1),
                  "host_cpu_s": round(cpu, 1), "run_steps": steps, "run_steps_per_s": round(steps / wall, 1),
                  "torch_threads": torch.get_num_threads(),
                  "top_own_time": [{"fn": f"{Path(k[0]).name}:{k[1]}:{k[2]}", "calls": v[1],
                                    "own_s": round(v[2], 2), "cum_s": round(v[3], 2)} for k, v in top]})


def part_targets(args) -> None:
    """The speed issue's step targets (batch 64 x 82 tokens, linear regression, graph step): the four target presets
    at full scale in bf16 autocast, with and without torch.compile inside the graph, and the paper-scale Mamba in
    fp32. `--conv ref` times the Mamba blocks with the shifted multiply-add conv instead of the fused kernel."""
    for name in args.target_presets:
        for compiled in (False, True):
            if compiled and name not in args.compile_presets:
                continue
            cfg = run_config(presets.PRESETS[name]("full"), precision="bf16", compile=compiled)
            measure(kind="target", preset=name, scale="full", mode="graph", backend="auto", compile=compiled,
                    conv=args.conv, scan_upcast=args.scan_upcast, cfg=cfg, steps=args.steps)
    if "mamba" not in args.target_presets:
        return
    for compiled in (False, True):
        measure(kind="target", preset="mamba", scale="paper", mode="graph", backend="auto", compile=compiled,
                conv=args.conv, scan_upcast=args.scan_upcast, cfg=run_config(presets.mamba("paper"), compile=compiled),
                steps=args.steps)


def part_recompile(args) -> None:
    """torch.compile across curriculum stages: a compiled graph step of the paper-scale Mamba driven through 16
    point counts (11 -> 41, as a curriculum grows), counting Dynamo recompiles and the seconds each stage's first step
    took (compile + capture), then the step time at the last stage."""
    import torch._dynamo

    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    device = torch.device("cuda")
    cfg = run_config(presets.mamba("paper"), compile=True)
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.io(), seed=0).to(device)
    opt = build_optimizer(cfg, model, device)
    step = make_step(model, task, opt, cfg, device, "graph")
    gen = train_generator(0)
    stage_s = []
    for n in range(11, 42, 2):
        t0 = time.perf_counter()
        step(task.sample(64, n, generator=gen))
        torch.cuda.synchronize()
        stage_s.append(round(time.perf_counter() - t0, 3))
        for _ in range(3):
            step(task.sample(64, n, generator=gen))
    torch.cuda.synchronize()
    emit({"kind": "recompile", "preset": "mamba", "scale": "paper", "stages": len(stage_s),
          "first_step_s": stage_s, "captures": step.captures,
          "dynamo_frames": dict(counters["frames"]), "dynamo_stats": dict(counters["stats"])})


def part_gridsweep(args) -> None:
    """Total run-steps/s of a paper-scale sweep of the results grid's mixed runs (all five Park architectures) with
    `train_many` on one GPU for --grid-seconds, started from scratch in a temporary store (startup included)."""
    from icllib.experiments import EXPERIMENTS

    configs = EXPERIMENTS.get("results_grid")("paper")[: args.grid_runs]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        t0 = time.perf_counter()
        runs = train_many(configs, store, device="cuda", concurrency=args.grid_runs,
                          time_limit_s=args.grid_seconds)
        wall = time.perf_counter() - t0
        steps = sum(r.status().get("step", 0) for r in runs)
        emit({"kind": "gridsweep", "runs": len(configs), "concurrency": args.grid_runs, "wall_s": round(wall, 1),
              "run_steps": steps, "run_steps_per_s": round(steps / wall, 1),
              "tasks": sorted({c.task.name for c in configs}),
              "compile_env": os.environ.get("ICLLIB_COMPILE", "0")})


PARTS = {"steps": part_steps, "precision": part_precision, "backends": part_backends, "lengths": part_lengths,
         "profile": part_profile, "sweep": part_sweep, "compile": part_compile,
         "host": part_host, "park": part_park, "overlap": part_overlap, "targets": part_targets,
         "recompile": part_recompile, "gridsweep": part_gridsweep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--steps", type=int, default=200, help="timed steps per row (after warm-up)")
    parser.add_argument("--sweep-steps", type=int, default=1000)
    parser.add_argument("--sweep-runs", type=int, default=8)
    parser.add_argument("--host-seconds", type=float, default=60.0)
    parser.add_argument("--sweep-hows", nargs="+", default=["sequential", "train_many", "processes"],
                        help="sequential | train_many (8 streams) | train_many_k<N> (N streams) | processes")
    parser.add_argument("--park-tokens", nargs="+", type=int, default=[280, 82])
    parser.add_argument("--park-presets", nargs="+", default=list(PARK), choices=list(PARK))
    parser.add_argument("--park-variants", nargs="+", default=["fp32", "tf32", "compile"],
                        choices=["fp32", "tf32", "compile"])
    parser.add_argument("--overlap-preset", default="mamba", choices=list(PARK))
    parser.add_argument("--overlap-runs", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--target-presets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--compile-presets", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--scan-upcast", action="store_true",
                        help="targets: run the Mamba blocks' scan on fp32 copies of its bf16 inputs (output cast back)")
    parser.add_argument("--conv", default="auto", choices=["auto", "ref"],
                        help="targets: the Mamba blocks' conv backend (fused Triton kernel or shifted multiply-adds)")
    parser.add_argument("--profile-precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--profile-presets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--grid-runs", type=int, default=15)
    parser.add_argument("--grid-seconds", type=float, default=90.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.conv == "ref":  # A/B: the Mamba blocks' conv as shifted multiply-adds (the pre-kernel path)
        import icllib.models.mamba as mamba_module

        fused = mamba_module.causal_conv1d_silu
        mamba_module.causal_conv1d_silu = lambda x, w, b, **kw: fused(x, w, b, backend="ref")
    if args.scan_upcast:  # A/B: the fp32 scan kernel under bf16 autocast, inputs cast up and the output back
        import icllib.models.mamba as mamba_module

        scan = mamba_module.selective_scan

        def upcast(u, delta, A, B, C, D=None, z=None, **kw):
            f = [t.float() if t is not None else None for t in (u, delta, B, C, z)]
            return scan(f[0], f[1], A, f[2], f[3], D, z=f[4], **kw).to(u.dtype)

        mamba_module.selective_scan = upcast
    if not torch.cuda.is_available():
        raise SystemExit("bench_train_step: needs a CUDA device")
    for part in args.parts:
        t0 = time.perf_counter()
        PARTS[part](args)
        print(json.dumps({"part": part, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        if args.out:
            args.out.write_text(json.dumps({"provenance": provenance("cuda"), "rows": ROWS}, indent=1) + "\n")


if __name__ == "__main__":
    main()
