# icllib: `make figures` and `make test` each set up .venv when it is missing, then do their job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= paper
ONLY   ?=

.PHONY: figures test lint lab smoke venv clean-venv

venv: $(STAMP)

# (Re)install when the venv is missing or pyproject.toml changed. torch==2.13.0 is installed first, and only when
# no torch is importable, so pip never pulls a multi-GB CUDA build on CPU machines (a GPU machine keeps its own).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

figures: $(STAMP)
	$(BIN)/icl figures --profile $(PROFILE) $(if $(ONLY),--only $(ONLY),)

test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks/executed/smoke --nbval-lax --nbval-current-env -q

lint: $(STAMP)
	$(BIN)/ruff check icllib tests kernels notebooks
	$(BIN)/lint-imports

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
