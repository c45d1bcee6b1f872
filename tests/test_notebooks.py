"""Notebook hygiene (DESIGN §5) for every `notebooks/NN_name.py` and its executed copies.

The executed smoke notebooks are re-run by nbval in the same `make test` (`--nbval-lax`: only cells marked
`# NBVAL_CHECK_OUTPUT` have their outputs compared); this file checks that they are up to date with their sources.
"""

import ast
from pathlib import Path

import nbformat
import pytest

from icllib import figures
from icllib.paths import NOTEBOOKS_DIR

SOURCES = figures.sources()
IDS = [p.stem for p in SOURCES]


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _executed(profile: str, source: Path) -> Path:
    return NOTEBOOKS_DIR / "executed" / profile / f"{source.stem}.ipynb"


def test_there_are_notebooks() -> None:
    assert any(p.stem == "00_tour" for p in SOURCES)


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_source_hygiene(source: Path) -> None:
    nb = figures.read_source(source)
    for cell in _code_cells(nb):
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda), (
                f"{source.name}: notebooks hold calls, not definitions (line {node.lineno} of a cell)"
            )
    params = figures.notebook_parameters(nb)  # exactly one parameters cell of plain literals
    assert "profile" in params and params["profile"] == "paper"
    checks = [c for c in _code_cells(nb) if c.source.lstrip().startswith("# NBVAL_CHECK_OUTPUT")]
    assert checks, f"{source.name}: no cell starting with '# NBVAL_CHECK_OUTPUT'"
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with its question in markdown"


@pytest.mark.parametrize("profile", figures.NOTEBOOK_PROFILES)
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_params_yaml_names_declared_parameters(source: Path, profile: str) -> None:
    figures.injected_parameters(source, profile)  # raises on a YAML key the notebook does not declare


@pytest.mark.parametrize("profile", figures.NOTEBOOK_PROFILES)
def test_params_yaml_names_existing_notebooks(profile: str) -> None:
    unknown = set(figures.load_params(profile)) - set(IDS)
    assert not unknown, f"params/{profile}.yaml names notebooks that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("profile", figures.NOTEBOOK_PROFILES)
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_executed_notebook_is_up_to_date(source: Path, profile: str) -> None:
    path = _executed(profile, source)
    if profile == "paper" and not path.exists():
        pytest.skip(f"{source.stem} has no paper execution yet (it needs GPU results)")
    assert path.exists(), f"run `icl figures --profile {profile} --only {source.stem[:2]}` and commit the result"
    executed = nbformat.read(path, as_version=4)
    cells = [c for c in _code_cells(executed) if "injected-parameters" not in c.metadata.get("tags", [])]
    assert [c.source for c in cells] == [c.source for c in _code_cells(figures.read_source(source))], (
        f"{path.name} ({profile}) is stale: its code differs from {source.name}"
    )
    text = [c.source for c in executed.cells if c.cell_type == "markdown"]
    assert text == [c.source for c in figures.read_source(source).cells if c.cell_type == "markdown"], (
        f"{path.name} ({profile}) is stale: its text differs from {source.name}"
    )
    for cell in cells:
        assert cell.execution_count is not None, f"{path.name}: a code cell was never executed"
    injected = [c for c in _code_cells(executed) if "injected-parameters" in c.metadata.get("tags", [])]
    expected = figures.injected_parameters(source, profile)
    assert len(injected) == (1 if expected else 0)
    if injected:
        got = {}
        exec(compile(injected[0].source, path.name, "exec"), {}, got)  # noqa: S102 - our own literal assignments
        assert got == expected, f"{path.name} ran with other parameters than params/{profile}.yaml gives"
    assert "papermill" not in executed.metadata, "timing noise was not stripped"
