"""The `icl` command.

    icl figures --profile paper [--only 02 03]   run notebooks, write executed notebooks and figures
    icl runs [--profile paper] [--incomplete]    list stored runs and their state
    icl hash config.json                         validate a RunConfig JSON file and print its config hash
    icl train config.json [--device cuda]        train (or resume) one run into the store
    icl sweep results_grid --profile paper [--executor auto]
                                                 every run of an experiment that is not in the store yet
    icl experiments [--profile paper]            list experiments and their number of runs

Errors the user can fix (unknown names, malformed configs, conflicting or damaged store directories, unknown
profiles, a damaged export) print one line `icl: error: ...` and exit with status 2. Output cut short by its reader
(`icl runs | head`) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from icllib.config import ConfigError, RunConfig, config_hash
from icllib.registry import UnknownNameError
from icllib.store import RunStore, StoreError, read_json

USER_ERRORS = (ConfigError, StoreError, UnknownNameError)

PROFILE_HELP = ("smoke: CPU-sized, minutes; paper: the reduced profile whose runs are committed; "
                "full: the papers' sizes, for a cluster")
ROOT_HELP = "store root; default: the repository's results/"
STREAMS = 8  # runs at once on one GPU by default: 2.3x faster than one after another (README, kernels/README.md)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is nothing to show (None, a flag's False) or its help says
    already what the default means (`default: ...`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def resolve_executor(executor: str, concurrency: int | None, n_gpus: int) -> tuple[str, int]:
    """`icl sweep`'s executor and concurrency on a machine with `n_gpus` GPUs (to use). `auto`: `inline` on one GPU
    (one process, `STREAMS` runs at once on CUDA streams: the fast way) or on CPU, `local` (one job per GPU) with
    two or more. Concurrency not given: `STREAMS` where runs train on GPUs (slurm jobs always do), 1 on CPU."""
    if executor == "auto":
        executor = "local" if n_gpus >= 2 else "inline"
    if concurrency is None:
        concurrency = 1 if n_gpus < 1 and executor in ("inline", "local") else STREAMS
    return executor, concurrency


def _cmd_figures(args: argparse.Namespace) -> int:
    from icllib import figures

    skipped: list[str] = []
    try:
        done = figures.run_all(args.profile, args.only, skipped)
    except figures.NotebookError as e:
        raise ConfigError(str(e)) from None
    for path in done:
        print(f"executed {path}")
    for reason in skipped:
        print(f"skipped {reason}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    """List the store, broken runs included: a damaged directory (unreadable config or status, a config that does
    not hash to its directory's name, a corrupt metrics file) is marked `broken` with its problem, and the other
    runs are listed as usual, so one bad directory neither hides the rest nor stops the command."""
    entries = RunStore(args.root).listing(args.profile)
    if args.incomplete:  # a broken run is not complete either: it needs attention
        entries = [e for e in entries if e.problem is not None or e.state != "complete"]
    for entry in entries:
        if entry.problem is not None:
            print(f"{entry.profile:6s} {entry.hash}  {'broken':9s} {entry.problem}")
            continue
        status = entry.status or {}
        name = entry.cfg.name if entry.cfg is not None else "?"
        print(f"{entry.profile:6s} {entry.hash}  {status.get('state', '?'):9s} step={status.get('step', '-')}  "
              f"{name}")
    broken = sum(e.problem is not None for e in entries)
    print(f"{len(entries)} run(s)" + (f", {broken} broken" if broken else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from icllib.runs.transfer import export_runs

    files = export_runs(RunStore(args.root), args.profile, args.out, checkpoints=args.checkpoints,
                        part_mib=args.part_mib, max_mib=args.max_mib)
    for f in files:
        print(f"{f.stat().st_size / 2**20:8.2f} MiB  {f}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """Import, then print the counts and one line per run not imported with the reason."""
    from icllib.runs.transfer import import_runs

    report = import_runs(args.src, RunStore(args.root), complete_only=args.complete_only)
    print(f"{len(report.added)} added, {len(report.updated)} updated, {len(report.skipped)} skipped "
          f"(complete here already, or not further than the stored state)"
          + (f", {len(report.lost)} not imported (checkpoint missing)" if report.lost else "")
          + (f", {len(report.partial)} incomplete left out" if report.partial else ""))
    for name, why in report.not_imported.items():
        print(f"not imported: {name}: {why}")
    return 0


def _load_config(path_str: str, device: str | None = None) -> RunConfig:
    """Read, parse and check a RunConfig JSON file (every field training would reject: one-line ConfigError)."""
    from icllib.training.validate import load_config_file

    return load_config_file(path_str, device=device)


def _cmd_hash(args: argparse.Namespace) -> int:
    print(config_hash(_load_config(args.config)))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from icllib.training.train import TrainingDiverged, train

    cfg = _load_config(args.config, device=args.device)
    try:
        run = train(cfg, RunStore(args.root), device=args.device, progress=None)
    except TrainingDiverged as e:
        print(f"icl: training failed: {e}", file=sys.stderr)
        return 1
    print(f"{run.status().get('state')}: {run.dir}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from icllib import experiments
    from icllib.runs import sweep
    from icllib.training.validate import check_run

    configs = [cfg for name in args.experiment for cfg in experiments.EXPERIMENTS.get(name)(args.profile)]
    for cfg in configs:  # a bad config stops the sweep before anything is written
        check_run(cfg)
    if args.dry_run:
        store = RunStore(args.root)
        todo = sweep.pending(configs, store)
        left = 0
        for cfg in todo:
            run = store.path(cfg)
            done = read_json(run / "status.json").get("step", 0) if (run / "status.json").exists() else 0
            left += cfg.train.steps - done
            print(f"{config_hash(cfg)}  {cfg.name}" + (f"  (stopped at step {done} of {cfg.train.steps})" if done
                                                       else ""))
        print(f"{len(configs)} configs, {len(todo)} to train, {left} run-steps to go")
        return 0
    slurm = {"partition": args.partition} if args.partition else {}
    import torch

    n_gpus = torch.cuda.device_count()
    n_gpus = n_gpus if args.gpus is None else min(n_gpus, args.gpus)
    executor, concurrency = resolve_executor(args.executor, args.concurrency, n_gpus)
    print(f"icl sweep: executor {executor}, concurrency {concurrency} ({n_gpus} GPU(s))", file=sys.stderr)
    try:
        result = sweep.run(configs, executor, store=RunStore(args.root), jobs_per_gpu=args.jobs_per_gpu,
                           concurrency=concurrency, gpus=args.gpus,
                           cpu_jobs=args.cpu_jobs, slurm=slurm, wait=not args.no_wait,
                           time_limit_s=None if args.time_limit_min is None else 60 * args.time_limit_min,
                           progress=args.progress)
    except sweep.SweepError as e:
        raise ConfigError(str(e)) from None
    print(f"{len(result.skipped)} already complete, {len(result.trained)} trained, {result.jobs} job(s)")
    return 0


def _cmd_experiments(args: argparse.Namespace) -> int:
    from icllib import experiments

    for name in experiments.EXPERIMENTS.names():
        configs = experiments.EXPERIMENTS.get(name)(args.profile)
        print(f"{name:40s} {len(configs):4d} runs ({args.profile})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icl", description="icllib: in-context learning in Transformers and Mamba")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = _HelpFormatter  # every subcommand shows its defaults

    p = sub.add_parser("figures", help="execute notebooks and regenerate their figures", formatter_class=fmt)
    p.add_argument("--profile", choices=("smoke", "paper"), default="paper", help=PROFILE_HELP.rsplit(";", 1)[0])
    p.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or names, e.g. 00 02_results_grid")
    p.set_defaults(func=_cmd_figures)

    p = sub.add_parser("runs", help="list runs in the store", formatter_class=fmt)
    p.add_argument("--profile", choices=("smoke", "paper", "full"),
                   help=f"only this profile's runs ({PROFILE_HELP}); default: every profile")
    p.add_argument("--incomplete", action="store_true", help="only runs that never finished")
    p.add_argument("--root", type=Path, default=None, help=ROOT_HELP)
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("export", help="write a profile's runs as records.tgz (+ checkpoint parts of incomplete runs)",
                       formatter_class=fmt)
    p.add_argument("--profile", choices=("smoke", "paper", "full"), default="paper", help=PROFILE_HELP)
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    p.add_argument("--checkpoints", action="store_true", help="also the ckpt.pt of every incomplete run")
    p.add_argument("--part-mib", type=float, default=15.0, help="largest checkpoint part, MiB")
    p.add_argument("--max-mib", type=float, default=None,
                   help="keep all files under this many MiB: the checkpoints of the runs furthest along go first")
    p.add_argument("--root", type=Path, default=None, help=ROOT_HELP)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="merge what `icl export` wrote into the store (complete runs are kept)",
                       formatter_class=fmt)
    p.add_argument("src", type=Path, help="folder holding records.tgz and checkpoints.tar.* parts")
    p.add_argument("--complete-only", action="store_true",
                   help="import only complete runs (into a git checkout's results/, whose checkpoints git ignores)")
    p.add_argument("--root", type=Path, default=None, help=ROOT_HELP)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("hash", help="validate a RunConfig JSON file and print its hash", formatter_class=fmt)
    p.add_argument("config")
    p.set_defaults(func=_cmd_hash)

    p = sub.add_parser("train", help="train (or resume) one run from a RunConfig JSON file", formatter_class=fmt)
    p.add_argument("config")
    p.add_argument("--device", default=None, help="cpu or cuda; default: cuda when available")
    p.add_argument("--root", type=Path, default=None, help=ROOT_HELP)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sweep", help="train every run of the experiments that is not complete in the store",
                       formatter_class=fmt)
    p.add_argument("experiment", nargs="+", help="one or more experiments; runs they share are trained once")
    p.add_argument("--profile", choices=("smoke", "paper", "full"), default="paper", help=PROFILE_HELP)
    p.add_argument("--executor", choices=("auto", "inline", "local", "slurm"), default="auto",
                   help="inline: in this process; local: one submitit job per GPU; slurm: a submitit job array; "
                        f"auto: inline with --concurrency {STREAMS} on one GPU (the fast way), local with two or "
                        "more GPUs, inline with --concurrency 1 on CPU")
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="local: jobs (processes) per GPU")
    p.add_argument("--concurrency", type=int, default=None,
                   help=f"runs trained at once in each job (and inline), one CUDA stream each; default: {STREAMS} "
                        "on GPUs, 1 on CPU")
    p.add_argument("--time-limit-min", type=float, default=None,
                   help="checkpoint and stop every run still training after this many minutes (every job)")
    p.add_argument("--gpus", type=int, default=None, help="local and auto: GPUs to use; default: all visible")
    p.add_argument("--cpu-jobs", type=int, default=1, help="local without GPUs: concurrent CPU jobs")
    p.add_argument("--partition", default=None, help="slurm partition")
    p.add_argument("--no-wait", action="store_true", help="submit and return without waiting for the jobs")
    p.add_argument("--dry-run", action="store_true", help="list the runs that would be trained")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (runs done, run-steps/s, ETA) and one line per run or job finished; "
                        "default: when stderr is a terminal")
    p.add_argument("--root", type=Path, default=None, help=ROOT_HELP)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("experiments", help="list experiments and their number of runs", formatter_class=fmt)
    p.add_argument("--profile", choices=("smoke", "paper", "full"), default="paper", help=PROFILE_HELP)
    p.set_defaults(func=_cmd_experiments)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        status = func(args)
        sys.stdout.flush()  # here, so that a closed pipe surfaces below rather than at interpreter exit
        return status
    except USER_ERRORS as e:
        print(f"icl: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader stopped early (`icl runs | head`): not an error of ours. Point stdout at devnull so that the
        # interpreter's final flush of what is still buffered does not raise again (Python's documented recipe).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout has no file descriptor (replaced, as under pytest)
            pass
        return 141  # 128 + SIGPIPE, what a command killed by the closed pipe reports


if __name__ == "__main__":
    sys.exit(main())
