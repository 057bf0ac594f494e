r"""The UBM beside the original PixelCNN++ code: same machine, same run, alternating.

Usage (what `make bench` runs where the original code's timing script is present):
  python -m experiments.bench_vs_original --original=PATH/ref_speed_json.py \
      [--runs=3] [--matmul_dtypes=float32,bfloat16] [--nr_resnet=1 --nr_filters=32 \
      --batch_size=8 --image_size=64 --steps=10]

`--original` is a script that times the original code (openai/pixel-cnn under
`tf.compat.v1`) and prints one JSON line with `train_images_per_sec` and
`likelihood_images_per_sec`, called as `python SCRIPT NR_RESNET NR_FILTERS BATCH SIZE
STEPS`. Each run times the original, then `bench_ubm` once per matmul dtype, each in a
fresh process (M=10 logistics), so that all see the same load; the runs alternate.
Prints one JSON line per run, then one with the median ratio port / original per
matmul dtype and measure, the configuration, the device and the instruction set of the
port's convolution kernels per matmul dtype (`conv_isa`, probed in the first run).
"""

from __future__ import annotations

import json
import subprocess
import sys

from absl import app, flags

from experiments import cli

ORIGINAL = flags.DEFINE_string(
    "original", None, "The original code's timing script (prints one JSON line)."
)
RUNS = flags.DEFINE_integer("runs", 3, "Alternating runs; the ratios' median is reported.")
MATMUL_DTYPES = flags.DEFINE_list(
    "matmul_dtypes", ["float32", "bfloat16"], "The port's matmul dtypes to time, each run."
)
NR_RESNET = flags.DEFINE_integer("nr_resnet", 1, "R of both programs.")
NR_FILTERS = flags.DEFINE_integer("nr_filters", 32, "F of both programs.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per step.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Side of the square images.")
STEPS = flags.DEFINE_integer("steps", 10, "Timed steps of each kind.")
flags.mark_flag_as_required("original")


def _last_json_line(command: list[str], what: str) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise app.UsageError(
            f"{what} printed no result (exit {done.returncode}): {' | '.join(tail)}"
        )
    return json.loads(lines[-1])


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    from pixelcnn_pp import config  # no TensorFlow: bad flags fail at once

    known = ", ".join(config.MATMUL_DTYPES)
    for dtype in MATMUL_DTYPES.value:
        if dtype not in config.MATMUL_DTYPES:
            raise app.UsageError(f"--matmul_dtypes: unknown {dtype!r}; choose from {known}.")
    if RUNS.value < 1:
        raise app.UsageError(f"--runs must be at least 1, got {RUNS.value}.")
    sizes = [NR_RESNET.value, NR_FILTERS.value, BATCH_SIZE.value, IMAGE_SIZE.value, STEPS.value]
    original_command = [sys.executable, ORIGINAL.value, *map(str, sizes)]
    port_flags = [
        f"--config.ubm.nr_resnet={NR_RESNET.value}",
        f"--config.ubm.nr_filters={NR_FILTERS.value}",
        "--config.ubm.nr_logistic_mix=10",
        f"--config.ubm.batch_size={BATCH_SIZE.value}",
        f"--config.ubm.image_size={IMAGE_SIZE.value}",
        f"--steps={STEPS.value}",
    ]
    runs = []
    for index in range(RUNS.value):
        original = _last_json_line(original_command, f"The original code ({ORIGINAL.value})")
        from pixelcnn_pp import benchmark  # TensorFlow, once the original has run

        ports = {
            dtype: _last_json_line(
                [
                    sys.executable,
                    "-m",
                    "experiments.bench_ubm",
                    *port_flags,
                    f"--config.ubm.matmul_dtype={dtype}",
                    # The kernels' ISA does not change between runs: found once.
                    "--probe_isa" if index == 0 else "--noprobe_isa",
                ],
                f"bench_ubm --config.ubm.matmul_dtype={dtype}",
            )
            for dtype in MATMUL_DTYPES.value
        }
        if index == 0:
            isas = {dtype: port.get("conv_isa") for dtype, port in ports.items()}
        run = benchmark.compare_with_original(original, ports)
        runs.append(run)
        print(json.dumps({"run": index + 1, **run}, sort_keys=True), flush=True)
    summary = {
        "median_ratio_port_over_original": benchmark.median_ratios(runs),
        "runs": len(runs),
        "config": f"R={NR_RESNET.value} F={NR_FILTERS.value} M=10 batch={BATCH_SIZE.value} "
        f"{IMAGE_SIZE.value}x{IMAGE_SIZE.value} steps={STEPS.value}",
        "device": benchmark.device_description(),
        "conv_isa": isas,
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
