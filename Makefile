# Two commands for users (see README): `make demo` runs the whole pipeline on the embedded
# defaults, `make test` runs the test suite. Both create .venv first when needed.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo base test test-fast bench bench-quick cluster-start cluster-stop clean-runs config

venv: $(STAMP)

# torch==2.13.0 first, with that exact pin: any looser spec pulls a multi-GB CUDA build on CPU boxes.
# llama-cpp-python builds llama.cpp from source (~4.5 min on 2 cores, once: pip caches the wheel);
# GGML_NATIVE=OFF so that a wheel cached on one CPU also runs on another (inference/README.md).
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(VENV)/bin/python -m pip install -q -e '.[dev]'
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: venv
	umask 007 && bash slurm/run-demo.sh

# Pretrain the shipped embedded base (models/embedded-base) on MedQuAD: ~2 h on 2 cores, resumable
# (rerun after a kill or Ctrl-C continues from the last checkpoint in runs/pretrain).
base: venv
	umask 007 && $(VENV)/bin/python fine-tuning/pretrain_base.py $(BASE_ARGS)

test: venv
	umask 007 && $(VENV)/bin/python -m pytest -q --durations=15

test-fast: venv
	umask 007 && $(VENV)/bin/python -m pytest -q -m "not slow and not slurm"

# Every benchmark, then benchmarks/README.md's table (see there how long it takes); quick: a smoke check.
bench: venv
	umask 007 && bash benchmarks/run-all.sh

bench-quick: venv
	umask 007 && HEALTHAI_BENCH_QUICK=1 bash benchmarks/run-all.sh

cluster-start:
	bash slurm/local-cluster.sh start

cluster-stop:
	bash slurm/local-cluster.sh stop

config: venv
	$(VENV)/bin/python -m healthai.config.dump > configs/pipeline.yaml

clean-runs:
	rm -rf runs
