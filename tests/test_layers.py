"""The package's layering (pyproject.toml `[tool.importlinter]`): no module imports from a layer above its own, and
the config layer stays free of the heavy ones."""

from __future__ import annotations

import subprocess
import sys

from icllib.paths import REPO_ROOT


def test_import_contracts_are_kept() -> None:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    out = subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def test_config_imports_no_models_tasks_training_or_torch() -> None:
    code = ("import sys, icllib.config; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(("
            "'icllib.models', 'icllib.tasks', 'icllib.training', 'torch.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
