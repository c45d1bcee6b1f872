"""Run configuration: frozen dataclasses, a strict JSON round-trip, and a stable hash.

A run is fully described by one `RunConfig`:

    RunConfig(
        name="lr_mamba",                       # a label; not part of the hash
        profile="paper",                       # smoke | paper | full; picks results/<profile>/
        task=TaskConfig("linear_regression", n_dims=20),
        model=ModelConfig(layers=("mamba",) * 4, d_model=128),
        train=TrainConfig(steps=50_000, lr=1e-4),
        curriculum=CurriculumConfig(...),
        seed=0,
    )

`config_hash(cfg)` is the sha256 of a canonical JSON payload (sorted keys, no whitespace, floats written by
`repr`), cut to 16 hex digits. Fields equal to their default are left out of the payload, so that adding a
new field *with a default that reproduces the old behaviour* keeps every stored run's hash. The rule that
follows: never change an existing default, add a new field instead. The hash does not depend on the process,
the machine, the Python hash seed or the dict order; the `name` label is excluded so that two figures that need
the same run share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

PROFILES = ("smoke", "paper", "full")

# Upper bounds on sizes. Far above every experiment's "full" profile; a value beyond one would exhaust memory or
# overflow long before the first step, so it is rejected when the config is built (`icl hash` catches it).
MAX_WIDTH = 1 << 16  # d_model, d_state, n_heads, d_conv, expand x d_model
MAX_DIMS = 1024  # task.n_dims (and so the curriculum's dims): some tasks factor a d x d matrix per batch
MAX_LAYERS = 1024  # len(model.layers)
MAX_LEN = 1 << 20  # model.max_len, prompt points (curriculum, eval.n_points, eval.extrapolate)
MAX_BATCH = 1 << 16  # train.batch_size, eval.batch_size
MAX_STEPS = 10**9  # train.steps and every step count or interval
MAX_EXAMPLES = 1 << 24  # eval.n_examples
MAX_EXTRAPOLATE = 64  # number of eval.extrapolate lengths
MAX_EXPAND = 64  # model.expand
# Seeds: training data uses `seed`, eval data and init use seed + 2**40 and seed + 2**41 (icllib.repro), so seeds
# at or above 2**40 would draw eval prompts from another run's training stream.
MAX_SEED = (1 << 40) - 1


class ConfigError(ValueError):
    """A config field has a value that is not allowed. The message names the field and the allowed values."""


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _finite_floats(cfg: Any, prefix: str) -> None:
    """Reject NaN and ±inf in every float field of a config dataclass (JSON `NaN`/`Infinity` parse to them)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{f.name}: must be a finite number, got {value}")


def _all_finite(value: Any) -> bool:
    """False if a JSON-like value holds NaN or ±inf anywhere (they cannot be hashed: `config_hash` is strict JSON)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    return True


def _in_range(value: int, lo: int, hi: int, where: str) -> None:
    """`lo <= value <= hi`, else a ConfigError naming `where` and the allowed range."""
    _require(lo <= value <= hi, f"{where}: must be in [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class TaskConfig:
    """Which task family to sample, at which input width, with which family-specific parameters.

    `kwargs` are passed to the task's dataclass (e.g. `{"sparsity": 3}`); the task validates them.
    """

    name: str
    n_dims: int = 20
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and self.name != "", "task.name: must be a non-empty string")
        _require(self.n_dims >= 1, f"task.n_dims: must be >= 1, got {self.n_dims}")
        _in_range(self.n_dims, 1, MAX_DIMS, "task.n_dims")
        _require(isinstance(self.kwargs, dict), f"task.kwargs: must be an object, got {type(self.kwargs).__name__}")
        for key, value in self.kwargs.items():
            _require(isinstance(key, str), f"task.kwargs: parameter names must be strings, got {key!r}")
            _require(_all_finite(value), f"task.kwargs.{key}: must be finite (no NaN or Infinity), got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """An architecture as data: the sequence of mixer blocks plus widths.

    `layers` names one registered mixer per block, e.g. `("mamba", "attn", "mamba", "attn", "mamba")`
    for MambaFormer (the names are those of `icllib.models.MIXERS`; `icllib.training.validate.check_model` checks
    them and the mixer-specific rules, since this module imports nothing from the package). `pos_emb` adds a learned
    absolute position embedding of `max_len` rows to the read-in. `mlp` gives every "attn" block a GPT-2 MLP (the
    hybrids have none).
    `norm` is the residual blocks' norm ("layernorm": Park et al.; "rmsnorm": Grazzi et al.'s Mamba).
    `attn_init`: "gpt2" (N(0, 0.02), residual projections / sqrt(2 * n_layers), as HF GPT-2) or "torch" (PyTorch
    defaults with zero biases, as the attention inside Park et al.'s hybrids). `s4d_init`: "lin" or "inv" (S4D).
    """

    layers: tuple[str, ...] = ("attn", "attn")
    d_model: int = 128
    n_heads: int = 8
    pos_emb: bool = False
    max_len: int = 1024
    mlp: bool = True
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dropout: float = 0.0
    scan_backend: str = "auto"
    norm: str = "layernorm"
    attn_init: str = "gpt2"
    s4d_init: str = "lin"

    def __post_init__(self) -> None:
        _require(len(self.layers) >= 1, "model.layers: must name at least one block")
        _require(len(self.layers) <= MAX_LAYERS, f"model.layers: at most {MAX_LAYERS} blocks, got {len(self.layers)}")
        for i, name in enumerate(self.layers):
            _require(isinstance(name, str) and name != "", f"model.layers[{i}]: must be a non-empty mixer name")
        _finite_floats(self, "model")
        _in_range(self.d_model, 1, MAX_WIDTH, "model.d_model")
        _in_range(self.n_heads, 1, MAX_WIDTH, "model.n_heads")
        if "attn" in self.layers:
            _require(
                self.d_model % self.n_heads == 0,
                f"model.d_model: {self.d_model} is not divisible by model.n_heads={self.n_heads} "
                "(model.layers has 'attn' blocks)",
            )
        _in_range(self.max_len, 1, MAX_LEN, "model.max_len")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout: must be in [0, 1), got {self.dropout}")
        _require(
            self.scan_backend in ("auto", "ref", "triton"),
            f"model.scan_backend: {self.scan_backend!r} is not one of 'auto', 'ref', 'triton'",
        )
        _require(self.norm in ("layernorm", "rmsnorm"), f"model.norm: {self.norm!r} is not 'layernorm' or 'rmsnorm'")
        _require(self.attn_init in ("gpt2", "torch"), f"model.attn_init: {self.attn_init!r} is not 'gpt2' or 'torch'")
        _require(self.s4d_init in ("lin", "inv"), f"model.s4d_init: {self.s4d_init!r} is not 'lin' or 'inv'")
        _in_range(self.d_state, 1, MAX_WIDTH, "model.d_state")
        _in_range(self.d_conv, 1, MAX_WIDTH, "model.d_conv")
        _in_range(self.expand, 1, MAX_EXPAND, "model.expand")
        _require(
            self.expand * self.d_model <= MAX_WIDTH,
            f"model.expand: model.expand * model.d_model must be <= {MAX_WIDTH}, got {self.expand} * {self.d_model}",
        )


@dataclass(frozen=True)
class CurriculumConfig:
    """Garg et al.'s curriculum: every `interval` steps, active dims and points grow by `inc` up to `end`.

    The defaults are a fixed schedule of 20 dims and 41 points (no growth).
    """

    dims_start: int = 20
    dims_end: int = 20
    dims_inc: int = 1
    dims_interval: int = 2000
    points_start: int = 41
    points_end: int = 41
    points_inc: int = 2
    points_interval: int = 2000

    def __post_init__(self) -> None:
        for kind in ("dims", "points"):
            start, end = getattr(self, f"{kind}_start"), getattr(self, f"{kind}_end")
            inc, interval = getattr(self, f"{kind}_inc"), getattr(self, f"{kind}_interval")
            top = MAX_DIMS if kind == "dims" else MAX_LEN
            _require(start >= 1, f"curriculum.{kind}_start: must be >= 1, got {start}")
            _in_range(start, 1, top, f"curriculum.{kind}_start")
            _require(end >= start, f"curriculum.{kind}_end: {end} is smaller than curriculum.{kind}_start={start}")
            _in_range(end, start, top, f"curriculum.{kind}_end")
            _require(inc >= 0, f"curriculum.{kind}_inc: must be >= 0, got {inc}")
            _in_range(inc, 0, top, f"curriculum.{kind}_inc")
            _require(interval >= 1, f"curriculum.{kind}_interval: must be >= 1, got {interval}")
            _in_range(interval, 1, MAX_STEPS, f"curriculum.{kind}_interval")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. The papers use Adam, constant lr, batch 64, clip 10, fp32 (the official code)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    grad_clip: float = 10.0
    precision: str = "fp32"
    compile: bool = False
    eval_every: int = 500
    ckpt_every: int = 500
    log_every: int = 100

    def __post_init__(self) -> None:
        _finite_floats(self, "train")
        _in_range(self.steps, 1, MAX_STEPS, "train.steps")
        _in_range(self.batch_size, 1, MAX_BATCH, "train.batch_size")
        _require(self.lr > 0, f"train.lr: must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, f"train.weight_decay: must be >= 0, got {self.weight_decay}")
        _require(self.optimizer in ("adam", "adamw"), f"train.optimizer: {self.optimizer!r} is not 'adam' or 'adamw'")
        _require(
            self.schedule in ("constant", "cosine"),
            f"train.schedule: {self.schedule!r} is not 'constant' or 'cosine'",
        )
        _in_range(self.warmup_steps, 0, MAX_STEPS, "train.warmup_steps")
        _require(self.grad_clip >= 0, f"train.grad_clip: must be >= 0 (0 disables), got {self.grad_clip}")
        _require(
            self.precision in ("fp32", "tf32", "bf16"),
            f"train.precision: {self.precision!r} is not one of 'fp32', 'tf32', 'bf16'",
        )
        for name in ("eval_every", "ckpt_every", "log_every"):
            _in_range(getattr(self, name), 1, MAX_STEPS, f"train.{name}")


@dataclass(frozen=True)
class EvalConfig:
    """The fixed evaluation set of a run (drawn from the eval seed range, disjoint from training data).

    n_points 0 means the curriculum's final number of points. `extrapolate` lists longer prompt lengths evaluated
    once at the end (Grazzi et al.'s length extrapolation); `probe` adds per-layer linear probes at the end.
    """

    n_points: int = 0
    n_examples: int = 1280
    batch_size: int = 64
    extrapolate: tuple[int, ...] = ()
    probe: bool = False

    def __post_init__(self) -> None:
        _require(self.n_points >= 0, f"eval.n_points: must be >= 0 (0 = curriculum end), got {self.n_points}")
        _in_range(self.n_points, 0, MAX_LEN, "eval.n_points")
        _in_range(self.n_examples, 1, MAX_EXAMPLES, "eval.n_examples")
        _in_range(self.batch_size, 1, MAX_BATCH, "eval.batch_size")
        _require(
            len(self.extrapolate) <= MAX_EXTRAPOLATE,
            f"eval.extrapolate: at most {MAX_EXTRAPOLATE} lengths, got {len(self.extrapolate)}",
        )
        for i, n in enumerate(self.extrapolate):
            _in_range(n, 1, MAX_LEN, f"eval.extrapolate[{i}]")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run and its stored results."""

    name: str
    task: TaskConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    profile: str = "smoke"
    seed: int = 0

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str), f"name: must be a string, got {self.name!r}")
        _require(self.profile in PROFILES, f"profile: {self.profile!r} is not one of {', '.join(PROFILES)}")
        _require(self.seed >= 0, f"seed: must be >= 0, got {self.seed}")
        _require(
            self.seed <= MAX_SEED,
            f"seed: must be in [0, 2**40 - 1] (larger seeds overlap the eval-data seed range), got {self.seed}",
        )


# ----------------------------------------------------------------------------------------------------------------
# dict round-trip

C = TypeVar("C")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a JSON value to the annotated type `tp`, raising ConfigError naming `where` on a mismatch."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, _where=where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer literal beyond the float range
            raise ConfigError(f"{where}: must be a finite number, got an integer of {len(str(value))} digits") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")  # pragma: no cover - a programming error


def from_dict(cls: type[C], data: Any, *, _where: str | None = None) -> C:
    """Build config dataclass `cls` from a dict, strictly: unknown keys and wrong types raise ConfigError."""
    where = _where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(fields)})")
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required field {missing[0]!r}")
    return cls(**kwargs)


def run_config_from_json(text: str) -> RunConfig:
    """Parse a RunConfig from JSON text; malformed JSON raises ConfigError with the position."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config JSON is malformed: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # an integer literal over Python's digit limit; absurd nesting
        raise ConfigError(f"config JSON is malformed: {str(e).splitlines()[0]}") from None
    return from_dict(RunConfig, data)


# ----------------------------------------------------------------------------------------------------------------
# hashing


def _non_default(cfg: Any) -> dict[str, Any]:
    """The fields of a config dataclass that differ from their defaults, recursively, as JSON-ready values."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if hints[f.name] is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # lr=1 and lr=1.0 are the same config
        if dataclasses.is_dataclass(value):
            nested = _non_default(value)
            if nested or f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                out[f.name] = nested  # an all-default nested config is left out, like any default field
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if default is dataclasses.MISSING or value != default:
            out[f.name] = json.loads(json.dumps(value))
    return out


def hash_payload(cfg: RunConfig) -> dict[str, Any]:
    """What `config_hash` hashes: non-default fields, without the `name` label."""
    payload = _non_default(cfg)
    payload.pop("name", None)
    return payload


def config_hash(cfg: RunConfig) -> str:
    """A 16-hex-digit sha256 of the canonical JSON of `hash_payload(cfg)`; stable across processes and machines."""
    canonical = json.dumps(hash_payload(cfg), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
