"""The `icl` command: user errors are one line on stderr with exit status 2, and nothing stored is touched."""

import json
from pathlib import Path

import pytest

from icllib.cli import main
from icllib.config import RunConfig, TaskConfig, config_hash, to_dict
from icllib.store import RunStore


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_hash_prints_the_config_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = RunConfig(name="x", task=TaskConfig("linear_regression"))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert main(["hash", str(path)]) == 0
    assert capsys.readouterr().out.strip() == config_hash(cfg)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"name": "x", "task": {"name": "lr"}', "malformed"),
        ('{"name": "x", "task": {"name": "lr"}, "modle": {}}', "unknown field 'modle'"),
        ('{"name": "x", "task": {"name": "lr"}, "model": {"d_model": 100, "n_heads": 8}}', "model.d_model"),
    ],
)
def test_bad_config_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                     needle: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    assert main(["hash", str(path)]) == 2
    err = _one_line_error(capsys)
    assert err.startswith("icl: error:") and needle in err


def test_unknown_profile_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["figures", "--profile", "huge"])
    assert e.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_unknown_notebook_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figures", "--profile", "smoke", "--only", "99"]) == 2
    err = _one_line_error(capsys)
    assert "no notebook '99'" in err and "00_tour" in err


def test_runs_lists_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore(tmp_path)
    store.open(RunConfig(name="first", task=TaskConfig("linear_regression"))).set_status("running", step=5)
    assert main(["runs", "--root", str(tmp_path), "--incomplete"]) == 0
    out = capsys.readouterr().out
    assert "running" in out and "step=5" in out and "first" in out and "1 run(s)" in out


def test_sweep_dry_run_merges_experiments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs shared by several experiments are listed (and trained) once: 03's runs are a subset of 04's."""
    assert main(["sweep", "parity_s4_vs_s6", "parity_training_speed", "--profile", "smoke", "--dry-run",
                 "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"23 configs, 15 to train, {15 * 120} run-steps to go"
    assert len(lines) == 16 and len({line.split()[0] for line in lines[:-1]}) == 15


def test_sweep_unknown_experiment_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "tour", "no_such_experiment", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_experiment" in err and len(err.splitlines()) == 1
