"""The notebook pipeline on a throw-away notebook: parameters, injection, execution and noise stripping."""

from pathlib import Path

import nbformat
import pytest

from icllib import figures

NOTEBOOK = '''# %% [markdown]
# # A test notebook

# %% tags=["parameters"]
profile = "paper"
n = 3

# %%
# NBVAL_CHECK_OUTPUT
print(profile, n * 2)
'''


@pytest.fixture()
def nbdir(tmp_path: Path) -> Path:
    (tmp_path / "params").mkdir()
    (tmp_path / "07_test.py").write_text(NOTEBOOK)
    (tmp_path / "params" / "smoke.yaml").write_text("07_test:\n  n: 5\n")
    return tmp_path


def test_parameters_are_read_and_injected(nbdir: Path) -> None:
    src = nbdir / "07_test.py"
    assert figures.notebook_parameters(figures.read_source(src)) == {"profile": "paper", "n": 3}
    assert figures.injected_parameters(src, "smoke", nbdir) == {"n": 5, "profile": "smoke"}
    assert figures.injected_parameters(src, "paper", nbdir) == {"profile": "paper"}


def test_unknown_yaml_parameter_is_an_error(nbdir: Path) -> None:
    (nbdir / "params" / "smoke.yaml").write_text("07_test:\n  m: 5\n")
    with pytest.raises(figures.NotebookError, match="has no parameter 'm'"):
        figures.injected_parameters(nbdir / "07_test.py", "smoke", nbdir)


@pytest.mark.parametrize(
    "cell, needle",
    [
        ('profile = "paper"\nn = 2 + 1\n', "not assigned a literal"),
        ('profile = "paper"\nprint(1)\n', "not a plain"),
    ],
)
def test_parameters_cell_must_be_literals(nbdir: Path, cell: str, needle: str) -> None:
    (nbdir / "07_test.py").write_text(NOTEBOOK.replace('profile = "paper"\nn = 3\n', cell))
    with pytest.raises(figures.NotebookError, match=needle):
        figures.notebook_parameters(figures.read_source(nbdir / "07_test.py"))


def test_exactly_one_parameters_cell(nbdir: Path) -> None:
    (nbdir / "07_test.py").write_text(NOTEBOOK + '\n# %% tags=["parameters"]\nseed = 0\n')
    with pytest.raises(figures.NotebookError, match="exactly one"):
        figures.notebook_parameters(figures.read_source(nbdir / "07_test.py"))


def test_execute_writes_a_clean_executed_notebook(nbdir: Path) -> None:
    out = figures.execute(nbdir / "07_test.py", "smoke", out_dir=nbdir / "executed")
    nb = nbformat.read(out, as_version=4)
    assert "papermill" not in nb.metadata
    assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in nb.cells)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert last.outputs[0]["text"] == "smoke 10\n"  # the injected parameters won
    first = out.read_bytes()
    figures.execute(nbdir / "07_test.py", "smoke", out_dir=nbdir / "executed")
    assert out.read_bytes() == first  # an unchanged notebook re-runs to the same file


def test_a_failing_notebook_names_its_cell(nbdir: Path) -> None:
    (nbdir / "07_test.py").write_text(NOTEBOOK + "\n# %%\n1 / 0\n")
    with pytest.raises(figures.NotebookError, match="ZeroDivisionError"):
        figures.execute(nbdir / "07_test.py", "smoke", out_dir=nbdir / "executed")
    assert not (nbdir / "executed" / "07_test.ipynb").exists()


MISSING_RUN = '''# %% [markdown]
# # Needs a run that is not stored

# %% tags=["parameters"]
profile = "paper"

# %%
from icllib.config import ModelConfig, RunConfig, TaskConfig
from icllib.store import RunStore
from icllib.training.train import load_or_train

cfg = RunConfig(name="never_trained", task=TaskConfig("linear_regression", n_dims=4),
                model=ModelConfig(layers=("attn",), d_model=8, n_heads=2))
load_or_train(cfg, RunStore(STORE))

# %%
# NBVAL_CHECK_OUTPUT
print("trained")
'''


def test_stored_only_skips_a_notebook_whose_runs_are_missing(nbdir: Path) -> None:
    (nbdir / "08_missing.py").write_text(MISSING_RUN.replace("STORE", repr(str(nbdir / "store"))))
    with pytest.raises(figures.NotebookSkipped, match="never_trained .* is not in"):
        figures.execute(nbdir / "08_missing.py", "paper", out_dir=nbdir / "executed", stored_only=True)
    assert not (nbdir / "executed" / "08_missing.ipynb").exists()  # nothing half-written
    assert not (nbdir / "store").exists() or not any((nbdir / "store").rglob("ckpt.pt"))  # nothing trained
