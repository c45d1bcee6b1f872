"""Bad configs are rejected when they are built or checked (`check_run`), with one line naming the field.

The property test mutates one field of every experiment's configs at random and requires that the result either
builds and passes `check_run`, or raises a ConfigError naming the mutated field; never any other exception.
"""

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icllib.config import (
    ConfigError,
    CurriculumConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    config_hash,
    from_dict,
    to_dict,
)
from icllib.experiments import EXPERIMENTS
from icllib.paths import REPO_ROOT
from icllib.training.validate import check_model, check_run, load_config_file

# a field name at the start of a message: `task.kwargs.k`, `model.layers[2]`, `RunConfig.train.lr`, `seed`
FIELD = re.compile(r"^[A-Za-z_]+(\.[A-Za-z_]\w*|\[\d+\])*:")


def _base() -> RunConfig:
    return RunConfig(name="x", task=TaskConfig("linear_regression", n_dims=5),
                     curriculum=CurriculumConfig(dims_start=5, dims_end=5, points_start=11, points_end=11))


def _rejects(cfg_or_build: Any, field: str) -> str:
    """The one-line ConfigError of building (a callable) or checking (a RunConfig); it must start with `field`."""
    with pytest.raises(ConfigError) as e:
        check_run(cfg_or_build() if callable(cfg_or_build) else cfg_or_build, device="cpu")
    msg = str(e.value)
    assert msg.startswith(field), msg
    assert "\n" not in msg
    return msg


def test_stored_configs_parse_hash_to_their_directory_and_pass_the_checks() -> None:
    """Validation never changes a stored run's hash, nor rejects a run that trained."""
    paths = sorted(REPO_ROOT.glob("results/*/*/config.json"))
    for path in paths:
        cfg = from_dict(RunConfig, json.loads(path.read_text()))
        assert config_hash(cfg) == path.parent.name, path
        check_run(cfg, device="cpu")


def test_every_experiment_passes_the_checks() -> None:
    for name in EXPERIMENTS.names():
        for profile in ("smoke", "paper", "full"):
            for cfg in EXPERIMENTS.get(name)(profile):
                assert check_run(cfg, device="cpu") is cfg


def test_config_module_imports_nothing_from_the_package() -> None:
    code = "import sys, icllib.config; print(sorted(m for m in sys.modules if m.startswith('icllib.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['icllib.config']"


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: dataclasses.replace(_base(), train=TrainConfig(lr=math.inf)), "train.lr"),
        (lambda: dataclasses.replace(_base(), train=TrainConfig(lr=math.nan)), "train.lr"),
        (lambda: dataclasses.replace(_base(), train=TrainConfig(weight_decay=math.inf)), "train.weight_decay"),
        (lambda: dataclasses.replace(_base(), train=TrainConfig(grad_clip=math.nan)), "train.grad_clip"),
        (lambda: dataclasses.replace(_base(), model=ModelConfig(dropout=math.nan)), "model.dropout"),
        (lambda: dataclasses.replace(_base(), seed=2**70), "seed"),
        (lambda: dataclasses.replace(_base(), seed=2**40), "seed"),
        (lambda: dataclasses.replace(_base(), train=TrainConfig(batch_size=2**40)), "train.batch_size"),
        (lambda: dataclasses.replace(_base(), train=TrainConfig(steps=10**12)), "train.steps"),
        (lambda: dataclasses.replace(_base(), model=ModelConfig(d_model=2**20)), "model.d_model"),
        (lambda: dataclasses.replace(_base(), model=ModelConfig(layers=("attn",) * 5000)), "model.layers"),
        (lambda: dataclasses.replace(_base(), model=ModelConfig(max_len=2**40)), "model.max_len"),
        (lambda: dataclasses.replace(_base(), eval=EvalConfig(extrapolate=(10, 2**30))), "eval.extrapolate[1]"),
        (lambda: TaskConfig("linear_regression", n_dims=10**6), "task.n_dims"),
        (lambda: TaskConfig("noisy_linear_regression", kwargs={"noise_std": math.nan}), "task.kwargs.noise_std"),
        (lambda: RunConfig(name="x", task=TaskConfig("linear_regression", n_dims=5)), "curriculum.dims_end"),
        (lambda: dataclasses.replace(_base(), model=ModelConfig(d_model=2**14, layers=("attn",) * 1000)),
         "model.d_model"),
    ],
)
def test_values_training_cannot_use_are_rejected_when_built(build, field: str) -> None:
    _rejects(build, field)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"task": TaskConfig("linear_regresion", n_dims=5)}, "task.name"),
        ({"task": TaskConfig("sparse_linear_regression", n_dims=5, kwargs={"sparsity": 9})}, "task.kwargs.sparsity"),
        ({"task": TaskConfig("sparse_linear_regression", n_dims=5, kwargs={"sparsity": "3"})}, "task.kwargs.sparsity"),
        ({"task": TaskConfig("sparse_linear_regression", n_dims=5, kwargs={"k": 3})}, "task.kwargs.k"),
        ({"task": TaskConfig("relu_2nn_regression", n_dims=5, kwargs={"hidden_size": 2**40})},
         "task.kwargs.hidden_size"),
        ({"task": TaskConfig("vector_mqar", n_dims=5, kwargs={"n_queries": 20})}, "curriculum.points_start"),
        ({"model": ModelConfig(layers=("attn", "mambo"))}, "model.layers[1]"),
        ({"model": ModelConfig(layers=("s4d",), d_state=7)}, "model.d_state"),
        ({"model": ModelConfig(pos_emb=True, max_len=16)}, "curriculum.points_start"),
        ({"eval": EvalConfig(extrapolate=(11, 600)), "model": ModelConfig(pos_emb=True)}, "eval.extrapolate[1]"),
        ({"eval": EvalConfig(probe=True), "model": ModelConfig(pos_emb=True, max_len=64)}, "eval.probe"),
        ({"eval": EvalConfig(probe=True), "task": TaskConfig("vector_mqar", n_dims=5)}, "eval.probe"),
        ({"model": ModelConfig(layers=("mamba",), scan_backend="triton")}, "model.scan_backend"),
    ],
)
def test_check_run_rejects_what_training_would(change: dict[str, Any], field: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # conftest sets it; triton on the CPU needs it
    msg = _rejects(dataclasses.replace(_base(), **change), field)
    if field == "curriculum.points_start" and "max_len" in str(change):
        assert "model.max_len=16" in msg


def test_check_run_is_silent_for_unused_settings() -> None:
    """The triton backend without a selective-scan block, and the position table without pos_emb, are unused."""
    check_run(dataclasses.replace(_base(), model=ModelConfig(scan_backend="triton")), device="cpu")
    check_run(dataclasses.replace(_base(), model=ModelConfig(max_len=4)), device="cpu")


def test_check_model_names_the_block() -> None:
    with pytest.raises(ConfigError, match=r"^model\.layers\[1\]: unknown mixer 'mambo'; known: .*mamba"):
        check_model(ModelConfig(layers=("mamba", "mambo")))


def test_load_config_file_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(to_dict(_base())))
    assert load_config_file(good) == _base()
    bad_utf8 = tmp_path / "latin1.json"
    bad_utf8.write_bytes(b'{"name": "caf\xe9"}')
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", ')
    cases = {tmp_path / "missing.json": "does not exist", tmp_path: "is a directory", bad_utf8: "not UTF-8",
             broken: "JSON is malformed"}
    for path, why in cases.items():
        with pytest.raises(ConfigError) as e:
            load_config_file(path)
        msg = str(e.value)
        assert msg.startswith(f"config: {path}") and why in msg and "\n" not in msg
    infinite = tmp_path / "inf.json"
    infinite.write_text(json.dumps({**to_dict(_base()), "train": {"lr": "LR"}}).replace('"LR"', "Infinity"))
    with pytest.raises(ConfigError, match=r"^train\.lr: must be a finite number"):
        load_config_file(infinite)
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({**to_dict(_base()), "train": {"lr": 10**400}}))
    with pytest.raises(ConfigError, match=r"^RunConfig\.train\.lr: must be a finite number"):
        load_config_file(huge)


# ----------------------------------------------------------------------------------------------------------------
# property test: one random mutation of a valid config builds, or names the mutated field


def _experiment_configs() -> list[RunConfig]:
    seen: dict[str, RunConfig] = {}
    for name in EXPERIMENTS.names():
        for profile in ("smoke", "paper"):
            for cfg in EXPERIMENTS.get(name)(profile):
                seen.setdefault(config_hash(cfg), cfg)
    return list(seen.values())


CONFIGS = _experiment_configs()
NAMES = ["attn", "mamba", "s4d", "triton", "linear_regression", "vector_mqar", "sparse_parity", "adamw", "bf16",
         "cosine", "rmsnorm", "inv", "paper", "random", "half_subspace", ""]


def _paths(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted path, container) of every node below the root, as error messages spell them."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            out += [(child, value), *_paths(value, child)]
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += [(f"{path}[{i}]", value), *_paths(value, f"{path}[{i}]")]
    return out


def _json_values(current: Any) -> st.SearchStrategy[Any]:
    """Any JSON value, but mostly one of the current value's type (so that most mutations pass the type check and
    reach the range and cross-field checks)."""
    anything = _any_json(current)
    if isinstance(current, bool):
        same: st.SearchStrategy[Any] = st.just(not current)
    elif isinstance(current, int):
        same = st.one_of(st.sampled_from([current + 1, current - 1, 0, -1, 1, 2, 3, current * 2, current * 1000,
                                          current // 2, 2**31, 2**63, 2**70]), st.integers(-5, 300))
    elif isinstance(current, float):
        same = st.sampled_from([0.0, -current, current * 1e6, 1e308, math.nan, math.inf, -math.inf, 1.0, 0.999])
    elif isinstance(current, str):
        same = st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
    elif isinstance(current, list):
        same = st.one_of(st.just([]), st.just(current + current[:1]), st.just(current[:1] * 3000),
                         st.lists(st.sampled_from(NAMES[:3] + [1, 2, 100, 10**6]), max_size=5))
    else:
        return anything
    return st.one_of(same, same, anything)


def _any_json(current: Any) -> st.SearchStrategy[Any]:
    near = [current + 1, current - 1, 0, -current, current * 1000] if isinstance(current, int) else []
    scalars = st.one_of(
        st.sampled_from([0, 1, -1, 2, 3, 7, 2**31, 2**63, 2**70, 10**400, *near]),
        st.integers(-1000, 10**6),
        st.sampled_from([0.0, 0.5, -0.5, 1.5, 1e-9, 1e308, math.nan, math.inf, -math.inf]),
        st.booleans(),
        st.none(),
        st.sampled_from(NAMES),
        st.text(max_size=8),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=4),
        st.dictionaries(st.sampled_from(["a", "k", "depth", "p"]), scalars, max_size=2),
    )


def _set(root: dict[str, Any], path: str, value: Any, *, delete: bool = False) -> None:
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node: Any = root
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if delete:
        del node[key]
    else:
        node[key] = value


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """(a mutated config dict, the dotted path of the field that was changed)."""
    data = to_dict(draw(st.sampled_from(CONFIGS)))
    nodes = _paths(data)
    path, current = draw(st.sampled_from(nodes))
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    if action == "add":  # an unknown key in an object: the message names the object
        objects = [""] + [p for p, v in nodes if isinstance(v, dict)]
        where = draw(st.sampled_from(objects))
        (_get(data, where) if where else data)["zz_unknown"] = draw(_json_values(0))
        return data, where
    if action == "delete" and "[" not in path.rsplit(".", 1)[-1]:
        _set(data, path, None, delete=True)
        return data, path
    _set(data, path, draw(_json_values(current)))
    return data, path


def _get(root: dict[str, Any], path: str) -> Any:
    node: Any = root
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_a_mutated_config_builds_or_names_the_field(case: tuple[dict[str, Any], str]) -> None:
    data, path = case
    try:
        check_run(from_dict(RunConfig, data), device="cpu")
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert FIELD.match(msg), f"no field at the start: {msg}"
        bare = msg.removeprefix("RunConfig.").removeprefix("RunConfig")
        head = bare.split(":", 1)[0]
        # the message's field is the mutated one, inside it, or its object; or the mutated field is named further on
        # (rules on several fields: "curriculum.dims_end: 20 is larger than task.n_dims=5")
        named = head == path or head.startswith((f"{path}.", f"{path}[")) or path.startswith(f"{head}.") or path in bare
        assert named or path == "", f"mutating {path!r} gave: {msg}"
