# dmrl: `make train` and `make test` are all a new user needs; both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch where the machine has it (a plain `pip install torch` pulls a multi-GB
# CUDA build); override with `make install TORCH=torch` for the default build of your platform.
TORCH  ?= torch==2.13.0
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install train eval test test-all bench tb clean gpu-wheels

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install dmrl with its dev extra

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

train: install ## run the default training job (MAML-TRPO on 2-D navigation); ARGS="key=value ..."
	$(BIN)/dmrl-train $(ARGS)

eval: install ## evaluate a checkpoint: make eval ARGS="checkpoint=outputs/train/.../checkpoints/last.pt"
	$(BIN)/dmrl-eval $(ARGS)

test: install ## run the test suite (fast tests; a few minutes on 2 cores)
	$(BIN)/python -m pytest -q $(ARGS)

test-all: install ## run every test, the slow learning runs included
	$(BIN)/python -m pytest -q -m "slow or not slow" $(ARGS)

bench: install ## print seconds per meta-iteration of the reference configuration
	$(BIN)/python scripts/benchmark.py $(ARGS)

gpu-wheels: install ## download the Python 3.12 wheels scripts/gpu_check.sh installs on a GPU machine (gpu_wheels/)
	PYTHON=$(BIN)/python bash scripts/gpu_wheels.sh

tb: install ## open TensorBoard on outputs/
	$(BIN)/tensorboard --logdir outputs

clean: ## remove the virtual environment and build artefacts (keeps outputs/)
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
