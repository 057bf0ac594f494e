# Entry points: install, lint, test, bench, reproduce.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Reproduction variables: with no FFPP_ROOT the pipeline runs on a generated
# FF++-layout dataset with the smoke configuration.
FFPP_ROOT ?=
SPLITS_DIR ?=
COMPRESSION ?= raw
CONFIG ?= smoke
WORKDIR ?= workdir/$(CONFIG)
# Real videos for `make bench` (face extraction speed).
TALKING_HEADS ?= ../shared/data/talking_heads

.PHONY: install lint format test test-fast bench reproduce clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest -q tests

# The quick subset for the edit loop (under a minute): tests not marked slow.
test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

bench: install
	$(PY) -m experiments.bench_ubm --nr_resnet=1 --nr_filters=32 --nr_logistic_mix=10 \
		--batch_size=8 --image_size=64 --steps=5
	$(PY) -m experiments.bench_faces --videos_dir=$(TALKING_HEADS) \
		--videos=d0.mp4,d3.mp4,d9.mp4,d13.mp4 --max_frames=120

reproduce: install
	FFPP_ROOT="$(FFPP_ROOT)" SPLITS_DIR="$(SPLITS_DIR)" COMPRESSION="$(COMPRESSION)" \
		CONFIG="$(CONFIG)" WORKDIR="$(WORKDIR)" PYTHON="$(PY)" bash experiments/reproduce.sh

clean:
	rm -rf $(VENV) workdir .pytest_cache .ruff_cache *.egg-info
