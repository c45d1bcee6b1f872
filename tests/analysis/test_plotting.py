import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from icllib.analysis import plotting

DRAW = """
import sys
import matplotlib.pyplot as plt
import numpy as np
from icllib.analysis import plotting
plotting.use_paper_style()
fig, ax = plt.subplots(figsize=(4, 3))
x = np.linspace(0, 1, 50)
ax.plot(x, x**2, color=plotting.color("mamba"), label="mamba")
ax.fill_between(x, x**2 - 0.1, x**2 + 0.1, alpha=0.2)
ax.set_xlabel("examples $i$"); ax.legend(); ax.set_title("determinism")
plotting.savefig(fig, "fig", profile=sys.argv[2], sidecar={"params": {"seed": 0}}, figures_dir=sys.argv[1])
"""


def _draw(out: Path, profile: str = "paper") -> None:
    subprocess.run([sys.executable, "-c", DRAW, str(out), profile], check=True, capture_output=True)


def test_savefig_is_byte_identical_across_processes(tmp_path: Path) -> None:
    _draw(tmp_path / "a")
    _draw(tmp_path / "b")
    for ext in ("png", "pdf"):
        a, b = (
            (tmp_path / "a" / f"fig.{ext}").read_bytes(),
            (tmp_path / "b" / f"fig.{ext}").read_bytes(),
        )
        assert a == b and len(a) > 1000
    assert b"CreationDate" not in (tmp_path / "a" / "fig.pdf").read_bytes()


def test_sidecar_and_profile_folder(tmp_path: Path) -> None:
    _draw(tmp_path, profile="smoke")
    side = json.loads((tmp_path / "smoke" / "fig.json").read_text())
    assert side["figure"] == "fig" and side["profile"] == "smoke" and side["params"] == {"seed": 0}
    assert {"git_sha", "torch", "device", "python"} <= set(side["provenance"])
    assert not (tmp_path / "fig.png").exists()


def test_savefig_rejects_bad_names_and_non_json_sidecars(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot(np.arange(3))
    with pytest.raises(ValueError, match="figure name"):
        plotting.savefig(fig, "../escape", figures_dir=tmp_path)
    with pytest.raises(ValueError):
        plotting.savefig(fig, "nan", sidecar={"x": float("nan")}, figures_dir=tmp_path)
    assert not (tmp_path / "nan.json").exists()
    plt.close(fig)
