# dmrl: `make train` and `make test` are all a new user needs; both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# env=metaworld: Meta-World pins mujoco 3.3.0, so it gets its own environment beside .venv
MW_VENV  := .venv-mw
MW_BIN   := $(MW_VENV)/bin
MW_STAMP := $(MW_VENV)/.installed
MW_TESTS := tests/test_metaworld.py tests/test_physics.py tests/test_mujoco_envs.py \
	'tests/test_config.py::test_every_option_composes_and_builds[env=metaworld]' \
	'tests/test_config.py::test_every_option_composes_and_builds[tasks=metaworld]'
# The CPU build of torch where the machine has it (a plain `pip install torch` pulls a multi-GB
# CUDA build); override with `make install TORCH=torch` for the default build of your platform.
TORCH  ?= torch==2.13.0
ARGS   ?=
# make test runs the fast tests in one pytest-xdist worker per core (`make test TEST_WORKERS=1`: one process)
TEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help install install-metaworld train eval test test-metaworld test-all bench tb clean gpu-wheels

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install dmrl with its dev extra

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install-metaworld: $(MW_STAMP) ## create .venv-mw: dmrl with Meta-World (env=metaworld; MuJoCo 3.3.0)

$(MW_STAMP): pyproject.toml
	$(PYTHON) -m venv $(MW_VENV)
	$(MW_BIN)/python -m pip install --quiet "$(TORCH)"
	$(MW_BIN)/python -m pip install --quiet -e ".[dev,metaworld]"
	touch $(MW_STAMP)

train: install ## run the default training job (MAML-TRPO on 2-D navigation); ARGS="key=value ..."
	$(BIN)/dmrl-train $(ARGS)

eval: install ## evaluate a checkpoint: make eval ARGS="checkpoint=outputs/train/.../checkpoints/last.pt"
	$(BIN)/dmrl-eval $(ARGS)

test: install install-metaworld ## run the test suite (fast tests; a few minutes on 2 cores), then the Meta-World tests in .venv-mw
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist load $(ARGS)
	$(MW_BIN)/python -m pytest -q $(MW_TESTS)

test-metaworld: install-metaworld ## run the Meta-World tests (and the physics tests on MuJoCo 3.3) in .venv-mw
	$(MW_BIN)/python -m pytest -q $(MW_TESTS) $(ARGS)

test-all: install ## run every test, the slow learning runs included
	$(BIN)/python -m pytest -q -m "slow or not slow" $(ARGS)

bench: install ## print seconds per meta-iteration of the reference configuration
	$(BIN)/python scripts/benchmark.py $(ARGS)

gpu-wheels: install ## download the Python 3.12 wheels scripts/gpu_check.sh installs on a GPU machine (gpu_wheels/)
	PYTHON=$(BIN)/python bash scripts/gpu_wheels.sh

tb: install ## open TensorBoard on outputs/
	$(BIN)/tensorboard --logdir outputs

clean: ## remove the virtual environment and build artefacts (keeps outputs/)
	rm -rf $(VENV) $(MW_VENV) build dist src/*.egg-info .pytest_cache
