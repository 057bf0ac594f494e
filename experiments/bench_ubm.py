r"""Benchmarks UBM training and likelihood-map throughput; prints one JSON line.

Usage (what `make bench` runs):
  python -m experiments.bench_ubm --nr_resnet=1 --nr_filters=32 --nr_logistic_mix=10 \
      --batch_size=8 --image_size=64 --steps=5 [--xla|--noxla] [--mixed_precision=...]

Output keys include train_images_per_sec, likelihood_images_per_sec (timed after
warm-up), forward_flops_per_image and the achieved FLOP/s, the device and TF version.
PixelCNN++ (Salimans et al., 2017) as the UBM of Khodabakhsh & Busch (BIOSIG 2020).
"""

from __future__ import annotations

import json

from absl import app, flags

from pixelcnn_pp import benchmark, training

NR_RESNET = flags.DEFINE_integer("nr_resnet", 1, "R: gated-resnet pairs per resolution.")
NR_FILTERS = flags.DEFINE_integer("nr_filters", 32, "F: channels of both streams.")
NR_LOGISTIC_MIX = flags.DEFINE_integer("nr_logistic_mix", 10, "M: mixture components.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per step.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Side of the square images.")
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps of training and of likelihood.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, compilation).")
XLA = flags.DEFINE_boolean("xla", False, "Compile train step and likelihood with XLA.")
MIXED_PRECISION = flags.DEFINE_string(
    "mixed_precision", "float32", "float32, mixed_bfloat16 or mixed_float16."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    policy = "" if MIXED_PRECISION.value == "float32" else MIXED_PRECISION.value
    config = benchmark.config_for_benchmark(
        nr_resnet=NR_RESNET.value,
        nr_filters=NR_FILTERS.value,
        nr_logistic_mix=NR_LOGISTIC_MIX.value,
        batch_size=BATCH_SIZE.value,
        image_size=IMAGE_SIZE.value,
        xla=XLA.value,
        mixed_precision=policy,
    )
    try:
        training.validate_config(config)
        result = benchmark.benchmark_ubm(config, steps=STEPS.value, warmup=WARMUP.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
