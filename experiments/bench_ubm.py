r"""Benchmarks UBM training and likelihood-map throughput; prints one JSON line.

Usage (what `make bench` runs):
  python -m experiments.bench_ubm --config=smoke --steps=5 [--workdir=SCRATCH] \
      [--config.ubm.nr_filters=N --config.ubm.batch_size=N --config.ubm.xla \
       --config.ubm.mixed_precision=mixed_bfloat16 --config.ubm.matmul_dtype=bfloat16 ...] \
      [--noprobe_isa]

The network is the configuration's UBM (`smoke` by default: R=1, F=32, M=10 on batches
of 8 64x64 images), any field overridden by `--config.ubm.<field>`.
`--config.ubm.matmul_dtype=bfloat16` runs the convolutions in bfloat16 and everything
else in float32 (the CPU's AMX / AVX512-BF16 units, a GPU's tensor cores).
`--workdir` is the scratch folder of the benchmark run (nothing is saved there; a
temporary folder by default).

Output keys include train_images_per_sec, likelihood_images_per_sec (timed after
warm-up), forward_flops_per_image and the achieved FLOP/s (train_gflops_per_sec,
likelihood_gflops_per_sec), the device's peak (peak_gflops with peak_assumptions; null
for an unknown GPU) and the fractions of it (train_fraction_of_peak,
likelihood_fraction_of_peak), the device, cpu_model and TF version, and on a CPU the
instruction set oneDNN ran the convolutions with: conv_isa (e.g. avx512_core_amx,
avx512_core_bf16, avx512_core, avx2), conv_kernels (the kernels' oneDNN names and
dtypes), onednn_max_isa, onednn_custom_ops; these come from one convolution of the
same shape and dtype run after the timed steps in a child process with oneDNN's verbose
log (the timed steps log nothing), and the CPU peak is that ISA's (`--noprobe_isa`:
not probed, null, the peak from the CPU flags). Side by side with the
original PixelCNN++ code: `make bench` (where ../shared has the comparison tool).
PixelCNN++ (Salimans et al., 2017) as the UBM of Khodabakhsh & Busch (BIOSIG 2020).
"""

from __future__ import annotations

import dataclasses
import json

from absl import app, flags

from experiments import cli
from experiments.configs import CONFIG_NAMES

CONFIG = flags.DEFINE_string(
    "config",
    "smoke",
    f"Configuration whose UBM settings are benchmarked: one of {', '.join(CONFIG_NAMES)}; any "
    "field overridden by --config.ubm.<field>.",
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Scratch folder of the benchmark run (default: a temporary folder)."
)
cli.define_override_flags()
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps of training and of likelihood.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, compilation).")
PROBE_ISA = flags.DEFINE_boolean(
    "probe_isa",
    True,
    "Report the ISA of the convolutions' oneDNN kernels (a child process; CPU only).",
)


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    ubm = cli.experiment_config(CONFIG).ubm
    scratch = None if WORKDIR.value is None else cli.workdir(WORKDIR).root
    from data_prep import files  # TensorFlow loads only once the flags are usable
    from pixelcnn_pp import benchmark

    # The benchmark initialises on one training batch.
    config = dataclasses.replace(ubm, init_batch_size=ubm.batch_size)
    with cli.stage_errors(f"--workdir={scratch!r}"):
        if scratch is not None:
            files.check_writable(scratch)
        result = benchmark.benchmark_ubm(
            config,
            steps=STEPS.value,
            warmup=WARMUP.value,
            scratch_dir=scratch,
            matmul_dtype=config.matmul_dtype,
            probe_isa=PROBE_ISA.value,
        )
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
