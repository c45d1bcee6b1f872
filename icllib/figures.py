"""The notebook pipeline: jupytext source → papermill run → executed notebook (and the figures it saves).

    notebooks/NN_name.py                      the only notebook source humans edit (jupytext py:percent)
    notebooks/params/<profile>.yaml           {NN_name: {parameter: value}} injected by papermill
    notebooks/executed/<profile>/NN_name.ipynb   the executed notebook, timing noise stripped (committed)

`icl figures --profile paper` (what `make figures` calls) runs every notebook; `--only 02 03` runs some. Each
notebook has exactly one cell tagged `parameters` holding plain literal assignments; papermill injects the
profile's values after it. Parameters named in the YAML but not in the notebook are an error, not a silent no-op.
"""

from __future__ import annotations

import ast
import copy
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from icllib.paths import NOTEBOOKS_DIR
from icllib.store import atomic_write_text

log = logging.getLogger(__name__)

NOTEBOOK_PROFILES = ("smoke", "paper")
_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")


class NotebookError(RuntimeError):
    """A notebook source, its parameters, or its execution is wrong."""


class NotebookSkipped(NotebookError):
    """A notebook needs runs that are not in the store and training was switched off (stored-only mode)."""


def sources(only: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebook sources `NN_name.py`, sorted; `only` keeps those whose number or stem is listed."""
    found = sorted(p for p in notebooks_dir.glob("*.py") if _NAME.match(p.name))
    if not only:
        return found
    wanted = set(only)
    picked = [p for p in found if p.name[:2] in wanted or p.stem in wanted]
    missing = wanted - {p.name[:2] for p in picked} - {p.stem for p in picked}
    if missing:
        known = ", ".join(p.stem for p in found)
        raise NotebookError(f"--only: no notebook {sorted(missing)[0]!r}; known: {known}")
    return picked


def read_source(path: Path) -> Any:
    """The jupytext notebook of a `.py` source (an nbformat NotebookNode)."""
    import jupytext

    return jupytext.read(path)


def parameters_cell(nb: Any) -> Any:
    """The single code cell tagged `parameters`; raises NotebookError if there is not exactly one."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise NotebookError(f"expected exactly one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def notebook_parameters(nb: Any) -> dict[str, Any]:
    """The literal assignments of the parameters cell, e.g. {"profile": "paper", "seed": 0}."""
    tree = ast.parse(parameters_cell(nb).source)
    params: dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise NotebookError(f"parameters cell: line {node.lineno} is not a plain `name = literal` assignment")
        try:
            params[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise NotebookError(f"parameters cell: `{node.targets[0].id}` is not assigned a literal") from None
    return params


def load_params(profile: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, dict[str, Any]]:
    """The per-notebook parameters of a profile from `notebooks/params/<profile>.yaml`."""
    if profile not in NOTEBOOK_PROFILES:
        raise NotebookError(f"profile: {profile!r} is not one of {', '.join(NOTEBOOK_PROFILES)}")
    path = notebooks_dir / "params" / f"{profile}.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise NotebookError(f"{path}: expected a mapping of notebook name -> mapping of parameters")
    return data


def injected_parameters(source: Path, profile: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, Any]:
    """What papermill injects into `source` for `profile`; unknown parameter names raise NotebookError."""
    declared = notebook_parameters(read_source(source))
    params = dict(load_params(profile, notebooks_dir).get(source.stem, {}))
    if "profile" in declared:
        params.setdefault("profile", profile)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise NotebookError(
            f"params/{profile}.yaml: {source.stem} has no parameter {unknown[0]!r} (declared: {', '.join(declared)})"
        )
    return params


def strip_noise(nb: Any) -> Any:
    """Drop what changes from run to run without changing results: papermill timings, execution timestamps,
    and random cell ids (replaced by their position, so re-running an unchanged notebook gives the same file)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "id" in cell:
            cell.id = f"cell-{i:03d}"
    return nb


def execute(source: Path, profile: str, *, out_dir: Path | None = None, timeout: int = 3600,
            stored_only: bool = False) -> Path:
    """Run one notebook source under `profile`; write and return `executed/<profile>/<stem>.ipynb`.

    `stored_only`: the notebook's kernel may not train (`load_or_train` raises MissingRunError); a notebook that
    needs a missing run raises NotebookSkipped and writes nothing."""
    import nbformat
    import papermill

    out_dir = out_dir or NOTEBOOKS_DIR / "executed" / profile
    params = injected_parameters(source, profile, source.parent)
    nb = read_source(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory() as tmp:
        src_ipynb = Path(tmp) / f"{source.stem}.ipynb"
        out_ipynb = Path(tmp) / f"{source.stem}.out.ipynb"
        nbformat.write(nb, src_ipynb)
        env_before = os.environ.get("ICLLIB_STORED_ONLY")
        os.environ["ICLLIB_STORED_ONLY"] = "1" if stored_only else "0"  # inherited by the notebook's kernel
        try:
            papermill.execute_notebook(
                str(src_ipynb),
                str(out_ipynb),
                parameters=params,
                kernel_name="python3",
                cwd=str(source.parent),
                progress_bar=False,
                execution_timeout=timeout,
            )
        except papermill.PapermillExecutionError as e:
            if e.ename == "MissingRunError":
                raise NotebookSkipped(f"{source.stem}: {e.evalue}") from None
            raise NotebookError(f"{source.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
        finally:
            if env_before is None:
                os.environ.pop("ICLLIB_STORED_ONLY", None)
            else:
                os.environ["ICLLIB_STORED_ONLY"] = env_before
        executed = strip_noise(nbformat.read(out_ipynb, as_version=4))
    target = out_dir / f"{source.stem}.ipynb"
    atomic_write_text(target, nbformat.writes(executed) + "\n")
    return target


def run_all(profile: str, only: list[str] | None = None, skipped: list[str] | None = None) -> list[Path]:
    """Execute the selected notebooks in order with a progress bar; returns the executed notebooks.

    The paper profile on a machine without a GPU is stored-only: a notebook whose runs are not all in the store is
    skipped (its reason appended to `skipped`, when given) instead of training them for hours on the CPU.
    """
    import torch
    from tqdm.auto import tqdm

    todo = sources(only)
    if not todo:
        raise NotebookError(f"no notebook sources NN_name.py found in {NOTEBOOKS_DIR}")
    for source in todo:  # validate every notebook's parameters before spending time on any of them
        injected_parameters(source, profile)
    done = []
    bar = tqdm(todo, desc=f"notebooks ({profile})", unit="nb")
    for source in bar:
        bar.set_postfix_str(source.stem)
        start = time.perf_counter()
        try:
            done.append(execute(source, profile, stored_only=profile == "paper" and not torch.cuda.is_available()))
        except NotebookSkipped as e:
            log.warning("skipped %s", e)
            if skipped is not None:
                skipped.append(str(e))
            continue
        log.info("%s executed in %.1f s", source.stem, time.perf_counter() - start)
    return done
