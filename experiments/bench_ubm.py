r"""Benchmarks UBM training and likelihood-map throughput; prints one JSON line.

Usage (what `make bench` runs):
  python -m experiments.bench_ubm --nr_resnet=1 --nr_filters=32 --nr_logistic_mix=10 \
      --batch_size=8 --image_size=64 --steps=5 [--xla|--noxla] [--mixed_precision=...] \
      [--matmul_dtype=float32|bfloat16] [--config=paper|smoke] [--workdir=SCRATCH]

Without `--config` the network is R=1, F=32, M=10 on batches of 8 64x64 images; with
it, the configuration's UBM settings, which the flags above override where given.
`--matmul_dtype=bfloat16` runs the convolutions in bfloat16 and everything else in
float32 (the CPU's AMX / AVX512-BF16 units, a GPU's tensor cores).
`--workdir` is the scratch folder of the benchmark run (nothing is saved there; a
temporary folder by default).

Output keys include train_images_per_sec, likelihood_images_per_sec (timed after
warm-up), forward_flops_per_image and the achieved FLOP/s (train_gflops_per_sec,
likelihood_gflops_per_sec), the device's peak (peak_gflops with peak_assumptions; null
for an unknown GPU) and the fractions of it (train_fraction_of_peak,
likelihood_fraction_of_peak), the device and TF version. Side by side with the
original PixelCNN++ code: `make bench` (where ../shared has the comparison tool).
PixelCNN++ (Salimans et al., 2017) as the UBM of Khodabakhsh & Busch (BIOSIG 2020).
"""

from __future__ import annotations

import json

from absl import app, flags

from experiments import cli
from experiments.configs import CONFIG_NAMES
from pixelcnn_pp.config import UBMConfig, validate_config

# The benchmark's network without --config (what `make bench` measures).
BENCH_DEFAULTS = UBMConfig(
    nr_resnet=1, nr_filters=32, nr_logistic_mix=10, batch_size=8, init_batch_size=8
)

CONFIG = flags.DEFINE_string(
    "config",
    None,
    f"Configuration whose UBM settings are benchmarked: one of {', '.join(CONFIG_NAMES)} "
    "(default: R=1, F=32, M=10, batch 8, 64x64).",
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Scratch folder of the benchmark run (default: a temporary folder)."
)
NR_RESNET = flags.DEFINE_integer(
    "nr_resnet", None, "R: gated-resnet pairs per resolution (default 1 or the config's)."
)
NR_FILTERS = flags.DEFINE_integer(
    "nr_filters", None, "F: channels of both streams (default 32 or the config's)."
)
NR_LOGISTIC_MIX = flags.DEFINE_integer(
    "nr_logistic_mix", None, "M: mixture components (default 10 or the config's)."
)
BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Images per step (default 8 or the config's)."
)
IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Side of the square images (default 64 or the config's)."
)
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps of training and of likelihood.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, compilation).")
XLA = flags.DEFINE_boolean("xla", False, "Compile train step and likelihood with XLA.")
MIXED_PRECISION = flags.DEFINE_string(
    "mixed_precision", "float32", "float32, mixed_bfloat16 or mixed_float16."
)
MATMUL_DTYPE = flags.DEFINE_enum(
    "matmul_dtype",
    "float32",
    ["float32", "bfloat16"],
    "bfloat16: the convolutions in bfloat16, the rest in float32 (with --mixed_precision=float32).",
)


def _pick(flag: flags.FlagHolder, default: int) -> int:
    return default if flag.value is None else flag.value


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    base = BENCH_DEFAULTS if CONFIG.value is None else cli.experiment_config(CONFIG).ubm
    scratch = None if WORKDIR.value is None else cli.workdir(WORKDIR).root
    policy = "" if MIXED_PRECISION.value == "float32" else MIXED_PRECISION.value
    from data_prep import files  # TensorFlow loads only once the flags are usable
    from pixelcnn_pp import benchmark

    config = benchmark.config_for_benchmark(
        nr_resnet=_pick(NR_RESNET, base.nr_resnet),
        nr_filters=_pick(NR_FILTERS, base.nr_filters),
        nr_logistic_mix=_pick(NR_LOGISTIC_MIX, base.nr_logistic_mix),
        batch_size=_pick(BATCH_SIZE, base.batch_size),
        image_size=_pick(IMAGE_SIZE, base.image_size),
        xla=XLA.value,
        mixed_precision=policy,
        base=base,
    )
    try:
        validate_config(config)
        if scratch is not None:
            files.check_writable(scratch)
        result = benchmark.benchmark_ubm(
            config,
            steps=STEPS.value,
            warmup=WARMUP.value,
            scratch_dir=scratch,
            matmul_dtype=MATMUL_DTYPE.value,
        )
    except (ValueError, PermissionError) as err:
        raise app.UsageError(str(err)) from None
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
