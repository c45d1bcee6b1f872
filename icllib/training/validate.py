"""Checks of a RunConfig that need the package (task and mixer registries, the tasks' own rules, the machine).

`icllib.config` checks each field on its own when a config is built (types, ranges, finite floats) and imports
nothing from the package. What needs the task or model code is checked here, before anything is written:

    cfg = load_config_file("config.json")      # read, parse and check_run a JSON file: one-line ConfigError
    cfg = check_run(cfg, device="cpu")          # task name and kwargs, mixers, prompt length vs max_len, backend

Why. Training would reject these configs too, but only after creating the run directory, or steps into the run (a
curriculum that grows the prompt past the position table fails at the step where it does). Every error is a
`ConfigError` whose message starts with the dotted field name (`task.kwargs.sparsity: ...`, `model.layers[2]: ...`)
and says what is allowed, on one line. `check_run` is side-effect free: it builds the task, samples one prompt per
length on the CPU from a private generator, and estimates the model's size without building it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import os
import typing
from pathlib import Path
from typing import Any

import torch

from icllib.config import MAX_WIDTH, ConfigError, ModelConfig, RunConfig, _coerce, run_config_from_json
from icllib.registry import UnknownNameError

log = logging.getLogger(__name__)

# numbers in one sampled prompt (points x n_dims): a training batch holds batch_size of them
MAX_PROMPT_NUMBERS = 1 << 26
# parameters of a model: 2**34 fp32 weights are 64 GiB, 256 GiB with Adam's state and the gradients
MAX_PARAMS = 1 << 34
# tokens per point of the formats whose sequence length is a multiple of n_points (models/icl.py); the others'
# sequence length is the sampled xs.shape[1]
_TOKENS_PER_POINT = {"pairs": 2, "triples": 3}
# Grazzi et al.'s probe (evaluate.lens_probe) samples prompts of n_context + n_test points and feeds n_context + 1
_LENS_POINTS, _LENS_FED = 40 + 30, 40 + 1


def check_model(cfg: ModelConfig, where: str = "model") -> ModelConfig:
    """Mixer names registered, and the mixer-specific rules (s4d's even `d_state`); returns `cfg` unchanged."""
    import icllib.models  # noqa: F401  (registers every mixer)
    from icllib.models.backbone import MIXERS

    for i, name in enumerate(cfg.layers):
        try:
            MIXERS.get(name)
        except UnknownNameError as e:
            raise ConfigError(f"{where}.layers[{i}]: {e}") from None
    if "s4d" in cfg.layers and cfg.d_state % 2:
        raise ConfigError(f"{where}.d_state: s4d needs an even value (complex-conjugate pairs), got {cfg.d_state}")
    return cfg


def check_task_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Every kwarg is a field of the task's dataclass, of its annotated type and within generous bounds."""
    from icllib.tasks import TASKS

    try:
        cls = TASKS.get(name)
    except UnknownNameError as e:
        raise ConfigError(f"task.name: {e}") from None
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}  # type: ignore[arg-type]
    allowed = sorted(set(fields) - {"n_dims"})
    hints = typing.get_type_hints(cls)
    for key, value in kwargs.items():
        where = f"task.kwargs.{key}"
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ConfigError(f"{where}: unknown parameter for task.name={name!r} (allowed: {known})")
        _coerce(hints[key], value, where)  # raises ConfigError naming `where` on a wrong type
        if isinstance(value, int) and not isinstance(value, bool):
            top = (1 << 63) - 1 if key.endswith("seed") else MAX_WIDTH
            low = 0 if key.endswith("seed") else -MAX_WIDTH
            if not low <= value <= top:
                raise ConfigError(f"{where}: must be in [{low}, {top}], got {value}")


def _build_task(cfg: RunConfig) -> tuple[Any, Any]:
    """The task of `cfg`, with the task's own errors turned into one-line ConfigErrors naming a task field."""
    from icllib.tasks import build_task

    check_task_kwargs(cfg.task.name, cfg.task.kwargs)
    try:
        task = build_task(cfg.task)
        io = task.io()
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(f"{msg if msg.startswith('task.') else f'task.kwargs: {msg}'} ({_describe(cfg)})") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"task.kwargs: the task rejects them: {e} ({_describe(cfg)})") from None
    return task, io


def _describe(cfg: RunConfig) -> str:
    """The task fields as `task.name='x', task.n_dims=20, task.kwargs.k=2`: errors that depend on several fields
    name all of them."""
    kwargs = "".join(f", task.kwargs.{k}={v!r}" for k, v in cfg.task.kwargs.items())
    return f"task.name={cfg.task.name!r}, task.n_dims={cfg.task.n_dims}{kwargs}"


def _lengths(cfg: RunConfig) -> list[tuple[str, int, int | None]]:
    """(field, n_points, n_dims_active) of every prompt length the run samples: training, eval, extrapolation."""
    cur = cfg.curriculum
    out: list[tuple[str, int, int | None]] = [
        ("curriculum.points_start", cur.points_start, cur.dims_start),
        ("curriculum.points_end", cur.points_end, cur.dims_end),
    ]
    if cfg.eval.n_points:
        out.append(("eval.n_points", cfg.eval.n_points, None))
    else:
        out.append(("curriculum.points_end", cur.points_end, None))  # the eval set samples every dimension
    out += [(f"eval.extrapolate[{i}]", n, None) for i, n in enumerate(cfg.eval.extrapolate)]
    return out


def _prompt_tokens(cfg: RunConfig, task: Any, io: Any, field: str, n_points: int, n_dims_active: int | None) -> int:
    """Sample one prompt of `n_points` on the CPU (a private generator) and return its sequence length in tokens."""
    n_dims = cfg.task.n_dims
    if n_points * n_dims > MAX_PROMPT_NUMBERS:
        raise ConfigError(
            f"{field}: a prompt of {n_points} points x task.n_dims={n_dims} is over {MAX_PROMPT_NUMBERS} numbers"
        )
    tokens, error = _sample_tokens(task, io.format, n_points, n_dims_active)
    if error is not None:
        raise ConfigError(f"{field}: {n_points} points cannot be sampled: {error} ({_describe(cfg)})")
    return tokens


@functools.lru_cache(maxsize=1024)
def _sample_tokens(task: Any, fmt: str, n_points: int, n_dims_active: int | None) -> tuple[int, str | None]:
    """(tokens in a prompt of `n_points`, None) or (0, why the task cannot sample it); cached, since sampling some
    tasks factors a matrix and sweeps check many configs of one task."""
    try:
        batch = task.sample(1, n_points, n_dims_active, generator=torch.Generator().manual_seed(0))
    except ConfigError as e:  # the task's own rules on n_points (MQAR queries, copying, induction heads)
        return 0, str(e)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        return 0, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    per_point = _TOKENS_PER_POINT.get(fmt)
    return (per_point * batch.xs.shape[1] if per_point else batch.xs.shape[1]), None


def _check_prompts(cfg: RunConfig, task: Any, io: Any) -> None:
    """Every prompt the run samples can be sampled, and fits the position table when there is one."""
    if io.format != "tokens" and cfg.curriculum.dims_end > cfg.task.n_dims:  # token tasks have no input dims
        raise ConfigError(
            f"curriculum.dims_end: {cfg.curriculum.dims_end} is larger than task.n_dims={cfg.task.n_dims}"
        )
    lengths = _lengths(cfg)
    if cfg.eval.probe:
        if io.format != "pairs":
            raise ConfigError(f"eval.probe: needs a task of format 'pairs', task {cfg.task.name!r} has {io.format!r}")
        lengths.append(("eval.probe", _LENS_POINTS, None))
    seen: dict[tuple[int, int | None], int] = {}
    for field, n_points, dims in lengths:
        key = (n_points, dims)
        if key not in seen:
            seen[key] = _prompt_tokens(cfg, task, io, field, n_points, dims)
        tokens = seen[key]
        if field == "eval.probe":
            tokens = _TOKENS_PER_POINT["pairs"] * _LENS_FED
        if cfg.model.pos_emb and tokens > cfg.model.max_len:
            raise ConfigError(
                f"{field}: a prompt of {n_points} points is {tokens} tokens, more than model.max_len="
                f"{cfg.model.max_len} (the position table's rows)"
            )


def _check_backend(cfg: RunConfig, device: str | None) -> None:
    """The triton scan backend needs the triton package and a CUDA device (or TRITON_INTERPRET=1 on the CPU)."""
    from icllib.models.mamba import SCAN_MIXERS  # importing icllib.models registers (and lists) every scan mixer

    if cfg.model.scan_backend != "triton" or not SCAN_MIXERS & set(cfg.model.layers):
        return
    if importlib.util.find_spec("triton") is None:
        raise ConfigError("model.scan_backend: 'triton' needs the triton package (pip install icllib[triton]); "
                          "use 'auto' or 'ref'")
    on_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(f"model.scan_backend: 'triton' needs a CUDA device (device: {device or 'cpu'}) or "
                          "TRITON_INTERPRET=1; use 'auto' or 'ref'")


def _check_device(device: str | None) -> None:
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device: {device!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: {device!r} is not 'cpu' or 'cuda'")


def _check_model_size(cfg: RunConfig, io: Any) -> None:
    """An estimate of the parameter count (weight matrices only) is under MAX_PARAMS: absurd widths times depths
    would exhaust memory at the first allocation. Cheap on purpose: no module is built."""
    m = cfg.model
    d = m.d_model
    per_block = {"attn": 13 if m.mlp else 4, "rwkv": 13, "mamba": 3 * m.expand, "mamba_s4": 3 * m.expand, "s4d": 2}
    n = sum(per_block.get(name, 13) * d * d for name in m.layers)
    n += d * (io.d_in + io.d_out + io.d_mid + (m.max_len if m.pos_emb else 0))
    if n > MAX_PARAMS:
        raise ConfigError(f"model.d_model: the model would have about {n:,} parameters (d_model={d}, "
                          f"{len(m.layers)} blocks), over the limit {MAX_PARAMS:,}")


def check_run(cfg: RunConfig, device: str | None = None) -> RunConfig:
    """Everything about `cfg` that training would reject, checked without side effects; returns `cfg` unchanged.

    `device`: the device training will use (None: CUDA when available); only the triton backend and an explicit
    'cuda' depend on it. Raises a one-line ConfigError starting with the dotted field name.
    """
    _check_device(device)
    check_model(cfg.model)
    task, io = _build_task(cfg)
    _check_prompts(cfg, task, io)
    _check_backend(cfg, device)
    _check_model_size(cfg, io)
    log.debug("%s: config checked", cfg.name)
    return cfg


def load_config_file(path: str | Path, device: str | None = None) -> RunConfig:
    """Read a RunConfig JSON file and `check_run` it. A missing file, a directory, bytes that are not UTF-8 and
    malformed JSON raise a one-line ConfigError starting `config: <path>`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config: {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"config: {path} is a directory, not a JSON file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config: {path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"config: {path} cannot be read ({e.strerror})") from None
    try:
        cfg = run_config_from_json(text)
    except ConfigError as e:
        msg = str(e)
        if msg.startswith("config JSON"):
            raise ConfigError(f"config: {path}: {msg.removeprefix('config ')}") from None
        raise
    return check_run(cfg, device)
