# Entry points: install, lint, test, bench, reproduce.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# GPU=1: install the CUDA build of TensorFlow too (setup.py extra `gpu`); needs an
# NVIDIA driver (nvidia-smi, /proc/driver/nvidia), checked before anything is installed.
GPU ?=
NVIDIA_PROC ?= /proc/driver/nvidia
comma := ,
EXTRAS := $(if $(filter 1,$(GPU)),test$(comma)gpu,test)
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)

# Reproduction variables: with no FFPP_ROOT the pipeline runs on a generated
# FF++-layout dataset with the smoke configuration. DATASET generated|ffpp|crops|folder|
# dfdc|celebdf (empty: generated without FFPP_ROOT, ffpp with it); DATASET_ROOT the
# dataset's folder for the others. OVERRIDES: any config field by its dotted name, e.g.
# OVERRIDES='--config.ubm.max_steps=50 --config.detector.epochs=5'.
FFPP_ROOT ?=
SPLITS_DIR ?=
COMPRESSION ?= raw
CONFIG ?= smoke
WORKDIR ?= workdir/$(CONFIG)
DATASET ?=
DATASET_ROOT ?=
OVERRIDES ?=
# Shortcuts for config overrides (empty = the config's; checked by the binaries):
# PRECISION float32|mixed_bfloat16|mixed_float16, MATMUL_DTYPE float32|bfloat16 (the
# convolutions only), XLA 0|1, UBM_BATCH_SIZE (global), EXTRACT_BATCH_SIZE, FRAMES (per
# video, 0 = every frame), FACE_FINDER fast|exact (how faces are found). Device flags:
# STRATEGY default|mirrored|multiworker, ALLOW_CPU=1 (full-size UBM without a GPU).
STRATEGY ?=
PRECISION ?=
MATMUL_DTYPE ?=
XLA ?=
UBM_BATCH_SIZE ?=
EXTRACT_BATCH_SIZE ?=
ALLOW_CPU ?=
FRAMES ?=
FACE_FINDER ?=
# Test processes for `make test` and `make test-fast` (pytest-xdist; 0 = one process).
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS)
# Real videos for `make bench` (face extraction speed).
TALKING_HEADS ?= ../shared/data/talking_heads

.PHONY: install lint format test test-cluster test-fast bench localise-examples reproduce clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	@case "$(GPU)" in "" | 0 | 1) ;; *) echo "make install: GPU must be 1 (or empty), got '$(GPU)'." >&2; exit 2 ;; esac
	@if [ "$(GPU)" = 1 ] && ! { [ -d "$(NVIDIA_PROC)" ] || nvidia-smi -L >/dev/null 2>&1; }; then \
		echo "make install GPU=1: no NVIDIA driver on this machine (nvidia-smi is missing or fails, no $(NVIDIA_PROC))." >&2; \
		echo "Install the NVIDIA driver first (the CUDA libraries come with TensorFlow), or run 'make install' for the CPU build." >&2; \
		exit 2; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The suite but for the multi-process cluster tests (CI runs both targets).
test: lint
	$(PY) -m pytest -q $(XDIST) -m "not cluster" tests

# The two-worker MultiWorkerMirroredStrategy cluster on loopback (a few minutes).
test-cluster: install
	$(PY) -m pytest -q -m cluster tests

# The quick subset for the edit loop (under 3 minutes on 2 cores): tests not marked slow.
test-fast: install
	$(PY) -m pytest -q $(XDIST) -m "not slow" tests

# Side-by-side speed against the original PixelCNN++ code (where ../shared has its
# timing script): float32 and bfloat16 convolutions, 3 alternating runs, median ratios.
REFERENCE_TIMING ?= ../shared/tools/ref_speed_json.py

bench: install
	$(PY) -m experiments.bench_ubm --config=smoke --steps=5
	@if [ -f "$(REFERENCE_TIMING)" ]; then \
		$(PY) -m experiments.bench_vs_original --original="$(REFERENCE_TIMING)" --runs=3; \
	else \
		echo "bench: no $(REFERENCE_TIMING): skipping the side-by-side comparison with the original PixelCNN++ code."; \
	fi
	@if [ -d "$(TALKING_HEADS)" ]; then \
		$(PY) -m experiments.bench_faces --videos_dir=$(TALKING_HEADS) \
			--videos=d0.mp4,d3.mp4,d9.mp4,d13.mp4 --max_frames=120; \
	else \
		echo "bench: no $(TALKING_HEADS): timing the face stage on generated videos instead."; \
		tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(PY) -m experiments.make_synthetic_ffpp --config=smoke --workdir="$$tmp" \
			--out="$$tmp/ffpp" --config.synthetic.identities=6 --config.synthetic.frames=48 && \
		$(PY) -m experiments.bench_faces \
			--videos_dir="$$tmp/ffpp/original_sequences/youtube/raw/videos" --max_frames=48; \
	fi

# Localisation on real FF++ frames with masks, by a UBM and a background model trained
# on real talking-head videos (defaults: the project's shared test data, where present).
EXAMPLES ?= ../shared/data/ffpp_examples
EXAMPLES_WORKDIR ?= workdir/examples

localise-examples: install
	PYTHON=$(PY) bash experiments/localise_examples.sh "$(TALKING_HEADS)" "$(EXAMPLES)" "$(EXAMPLES_WORKDIR)"

reproduce: install
	FFPP_ROOT="$(FFPP_ROOT)" SPLITS_DIR="$(SPLITS_DIR)" COMPRESSION="$(COMPRESSION)" \
		CONFIG="$(CONFIG)" WORKDIR="$(WORKDIR)" PYTHON="$(PY)" DATASET="$(DATASET)" \
		DATASET_ROOT="$(DATASET_ROOT)" OVERRIDES="$(OVERRIDES)" STRATEGY="$(STRATEGY)" \
		PRECISION="$(PRECISION)" MATMUL_DTYPE="$(MATMUL_DTYPE)" XLA="$(XLA)" UBM_BATCH_SIZE="$(UBM_BATCH_SIZE)" \
		EXTRACT_BATCH_SIZE="$(EXTRACT_BATCH_SIZE)" ALLOW_CPU="$(ALLOW_CPU)" FRAMES="$(FRAMES)" \
		FACE_FINDER="$(FACE_FINDER)" bash experiments/reproduce.sh

clean:
	rm -rf $(VENV) workdir .pytest_cache .ruff_cache *.egg-info
