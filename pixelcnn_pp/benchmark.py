"""Throughput of UBM training and likelihood-map computation (images per second).

Times the real code paths: the distributed train step of `training` (forward,
backward, Adam, Polyak averaging) and the compiled likelihood function of
`likelihood`, on random uint8 images, after warm-up steps that absorb tracing and
compilation. FLOP/s figures use the conv/nin multiply-add count of `flops` (a train
step is counted as 3 forward passes: forward, and a backward pass of twice its cost)
and are set against the device's peak (`device_peak`): for a CPU, cores x clock x the
FLOPs per cycle of the instruction set oneDNN ran the convolutions with (`conv_isa`,
found by a probe in a child process after the timed steps: float32 vector lanes x FMA
units x 2, or the AMX / AVX512-BF16 rate where bfloat16 convolutions run on those
units); for a GPU, the dense peak of a small table of known models (None for others).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time

import numpy as np
import tensorflow as tf

from pixelcnn_pp import conv_isa, flops, layers, likelihood, training
from pixelcnn_pp.config import UBMConfig, validate_config
from pixelcnn_pp.model import images_to_model_input


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo 'model name', else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> str:
    """The accelerator's name if TensorFlow sees one, otherwise the CPU model and cores."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
    return f"{cpu_model()}, {os.cpu_count()} cores (CPU only)"


# Dense peak TFLOP/s of known GPUs (vendor figures, no sparsity): name fragment ->
# (float32, bfloat16/float16 tensor cores). Checked in order: "H200" before "H100".
_GPU_PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H200", 67.0, 989.0),
    ("H100 PCIe", 51.0, 756.0),
    ("H100", 67.0, 989.0),
    ("A100", 19.5, 312.0),
    ("L40S", 91.6, 362.0),
    ("L4", 30.3, 121.0),
    ("A10", 31.2, 125.0),
    ("V100", 15.7, 125.0),
    ("T4", 8.1, 65.0),
)


def _cpu_flags_and_mhz() -> tuple[set[str], float | None, str]:
    """(/proc/cpuinfo flags, clock in MHz or None, where the clock came from)."""
    flags_: set[str] = set()
    mhz = None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags_:
                    flags_ = set(value.split())
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
    except (OSError, ValueError):
        pass
    source = "/proc/cpuinfo 'cpu MHz'"
    try:  # the maximum (turbo) clock, where the kernel exposes it, is the peak's clock
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as handle:
            mhz, source = int(handle.read()) / 1000.0, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    return flags_, mhz, source


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# bfloat16 FLOPs per cycle per core of the CPU's matrix units: AMX (one TMUL tile
# multiply-accumulate of 16x32 by 32x16 bfloat16 per 16 cycles: 1024, Intel's figure)
# and AVX512-BF16 (VDPBF16PS: 32 pairs, 64 FLOPs, on each of 2 FMA ports: 128).
_AMX_BF16_FLOPS_PER_CYCLE = 1024
_AVX512_BF16_FLOPS_PER_CYCLE = 128


def isa_flops_per_cycle(isa: str, low_precision: bool) -> tuple[int, str]:
    """(FLOPs per cycle per core of a oneDNN kernel ISA, how they are counted).

    An AMX kernel ("avx512_core_amx") computes in bfloat16 on the tiles: 1024. With
    16-bit operands (`low_precision`), an AVX512-BF16 kernel ("avx512_core_bf16",
    "avx512_core_fp16"): 128. Otherwise the float32 FMA rate of the ISA's vector
    width: 16 lanes (AVX-512, also for bfloat16 operands widened to float32 by an
    "avx512_core" kernel), 8 (AVX2) x 2 FMA units (assumed) x 2 FLOPs per FMA; AVX
    and SSE4.1 have no FMA: 8 or 4 lanes x an add and a multiply unit.
    """
    if "amx" in isa:
        return _AMX_BF16_FLOPS_PER_CYCLE, "AMX tiles"
    if low_precision and isa in ("avx512_core_bf16", "avx512_core_fp16"):
        return _AVX512_BF16_FLOPS_PER_CYCLE, "AVX512-BF16, 2 FMA units assumed"
    if isa.startswith("avx512"):
        return 16 * 2 * 2, "16 float32 lanes x 2 FMA units (assumed) x 2 FLOPs per FMA"
    if isa.startswith("avx2"):
        return 8 * 2 * 2, "8 float32 lanes x 2 FMA units (assumed) x 2 FLOPs per FMA"
    lanes = 8 if isa == "avx" else 4
    return lanes * 2, f"{lanes} float32 lanes x an add and a multiply unit, no FMA"


def device_peak(
    precision: str = "float32", matmul_dtype: str = "float32", conv_isa: str | None = None
) -> tuple[float | None, str]:
    """(peak GFLOP/s of the device the benchmark runs on, or None; its assumptions).

    CPU, float32: cores (the affinity mask) x clock x float32 lanes of the widest
    vector unit (AVX-512: 16, AVX2: 8, SSE: 4) x 2 FMA units (assumed: Xeon server
    cores with AVX-512 have two; the count is not visible to software) x 2 FLOPs per
    FMA. CPU with bfloat16 convolutions (a mixed policy or `matmul_dtype="bfloat16"`):
    cores x clock x the bfloat16 FLOPs per cycle of AMX (1024) where the CPU has
    `amx_bf16`, else of AVX512-BF16 (128) where it has `avx512_bf16`, else the float32
    rate. GPU: the dense tensor-core peak for mixed precision, the float32 peak
    otherwise, for the models of a small table; None for other GPUs.

    `conv_isa`, the ISA of the oneDNN kernels the convolutions ran with (see
    `conv_isa.probe_conv_isa`), replaces the CPU flags where given: the rate is then
    `isa_flops_per_cycle(conv_isa, ...)`, so no AMX or AVX512-BF16 peak is claimed
    where the kernels did not use those units (for instance bfloat16 convolutions that
    TensorFlow runs in float32 through Eigen).
    """
    low = precision not in ("", "float32") or matmul_dtype != "float32"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        for fragment, fp32, half in _GPU_PEAK_TFLOPS:
            if fragment.lower() in name.lower():
                mixed = low
                peak = (half if mixed else fp32) * 1000.0 * len(gpus)
                kind = "bf16/fp16 dense tensor-core" if mixed else "fp32"
                return peak, f"{len(gpus)} x {name}: {kind} peak {half if mixed else fp32} TFLOP/s"
        return None, f"{name}: not in the table of known GPUs"
    flags_, mhz, source = _cpu_flags_and_mhz()
    if mhz is None:
        return None, "CPU clock unknown (no 'cpu MHz' in /proc/cpuinfo)"
    cores = _cpu_cores()
    if conv_isa is not None:
        per_cycle, how = isa_flops_per_cycle(conv_isa, low)
        return cores * mhz / 1000.0 * per_cycle, (
            f"{cores} cores x {mhz:.0f} MHz ({source}) x {per_cycle} FLOPs per cycle of "
            f"the convolutions' oneDNN kernels ({conv_isa}: {how}); the input and "
            "output layers are counted at this rate too"
        )
    if low and ("amx_bf16" in flags_ or "avx512_bf16" in flags_):
        amx = "amx_bf16" in flags_
        per_cycle = _AMX_BF16_FLOPS_PER_CYCLE if amx else _AVX512_BF16_FLOPS_PER_CYCLE
        peak = cores * mhz / 1000.0 * per_cycle
        return peak, (
            f"{cores} cores x {mhz:.0f} MHz ({source}) x {per_cycle} bfloat16 FLOPs per "
            f"cycle ({'AMX tiles' if amx else 'AVX512-BF16, 2 FMA units assumed'}); the "
            "input and output layers run in float32 but are counted at "
            "this rate"
        )
    lanes = 16 if "avx512f" in flags_ else 8 if "avx2" in flags_ else 4
    fma_units = 2
    peak = cores * mhz / 1000.0 * lanes * fma_units * 2
    return peak, (
        f"{cores} cores x {mhz:.0f} MHz ({source}) x {lanes} float32 lanes "
        f"({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}) x "
        f"{fma_units} FMA units (assumed) x 2 FLOPs per FMA"
    )


def _time_calls(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - start


def benchmark_ubm(
    config: UBMConfig,
    steps: int,
    warmup: int = 2,
    scratch_dir: str | None = None,
    matmul_dtype: str = "float32",
    probe_isa: bool = True,
) -> dict:
    """Measures train and likelihood throughput of the UBM described by `config`.

    Times batches of uint8 [batch_size, image_size, image_size, 3] random images.

    Args:
      config: architecture, batch_size, image_size, mixed_precision, xla and
        fused_kernels are used.
      steps: timed steps of each kind.
      warmup: untimed steps first (tracing, XLA compilation).
      scratch_dir: the run's checkpoint folder (nothing is saved there); default a
        temporary folder, deleted after.
      matmul_dtype: "float32", or "bfloat16" for bfloat16 convolutions with the rest
        in float32 (see `layers.matmul_precision`).
      probe_isa: on a CPU, find the ISA of the convolutions' oneDNN kernels
        (`conv_isa.probe_conv_isa`, a child process with oneDNN's verbose log, run
        after the timed steps; TensorFlow's start-up makes it take seconds) and base
        the peak on it; False: the keys are None and the peak comes from the CPU flags.

    Returns:
      A flat dict: the settings, device, CPU model, TF version, forward FLOPs per
      image, train/likelihood images per second, achieved FLOP/s (and GFLOP/s), the
      device peak (`peak_gflops`, None where unknown, with `peak_assumptions`) and the
      fractions of it, compile times, and the convolutions' kernels: `conv_isa` (e.g.
      "avx512_core_amx", "avx512_core_bf16", "avx512_core", "avx2"; None on a GPU or
      unprobed), `conv_kernels` (each kernel's oneDNN name and dtype, or why none),
      `onednn_max_isa` and `onednn_custom_ops` (TensorFlow's oneDNN operations on).
    """
    if steps < 1 or warmup < 1:
        raise ValueError(f"steps and warmup must be at least 1, got {steps} and {warmup}.")
    layers.check_matmul_dtype(matmul_dtype)
    # The run builds its model in the config's matmul dtype (an enclosing
    # `matmul_precision` scope would not reach it).
    config = dataclasses.replace(config, matmul_dtype=matmul_dtype)
    validate_config(config)
    size, batch = config.image_size, config.batch_size
    rng = np.random.default_rng(config.seed)
    images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))

    strategy = tf.distribute.get_strategy()
    if scratch_dir is None:
        with tempfile.TemporaryDirectory() as scratch:  # the run's (unused) checkpoints
            run = training.build_run(config, strategy, scratch, keep=1)
    else:
        run = training.build_run(config, strategy, scratch_dir, keep=1)
    run.model.data_dependent_init(images_to_model_input(images))
    run.ema.reset(run.model.trainable_variables)
    train_step = training.make_train_step(run, config, batch)
    iterator = iter(tf.data.Dataset.from_tensors(images).repeat())

    def one_train_step() -> None:
        loss = float(train_step(iterator))
        if not np.isfinite(loss):
            raise training.NonFiniteLossError(f"Benchmark loss became {loss}.")

    compile_train = _time_calls(one_train_step, 1)
    _time_calls(one_train_step, warmup - 1)
    train_seconds = _time_calls(one_train_step, steps)

    run.ema.copy_to(run.model.trainable_variables)  # training is over: evaluate the averages
    maps_fn = likelihood.compiled_likelihood_fn(run.model, jit_compile=config.xla)
    compile_lik = _time_calls(lambda: maps_fn(images).numpy(), 1)
    _time_calls(lambda: maps_fn(images).numpy(), warmup - 1)
    lik_seconds = _time_calls(lambda: maps_fn(images).numpy(), steps)

    forward = flops.pixelcnn_pp_forward_flops(
        config.nr_resnet, config.nr_filters, config.nr_logistic_mix, size, size
    )
    train_ips = batch * steps / train_seconds
    lik_ips = batch * steps / lik_seconds
    # What the gated resnets' convolutions computed in, read off the model.
    conv_dtype = run.model.up0_u0.conv1.compute_dtype
    if tf.config.list_physical_devices("GPU"):
        kernels = conv_isa.not_probed("GPU (cuDNN): no oneDNN convolution")
    elif probe_isa:
        kernels = conv_isa.probe_conv_isa(conv_dtype, batch, size, config.nr_filters)
    else:
        kernels = conv_isa.not_probed("not probed")
    peak, assumptions = device_peak(config.mixed_precision, matmul_dtype, kernels["conv_isa"])
    train_gflops = 3.0 * forward * train_ips / 1e9
    lik_gflops = forward * lik_ips / 1e9
    return {
        **{k: getattr(config, k) for k in ("nr_resnet", "nr_filters", "nr_logistic_mix")},
        "batch_size": batch,
        "image_size": size,
        "steps": steps,
        "warmup": warmup,
        "xla": config.xla,
        "mixed_precision": config.mixed_precision or "float32",
        "matmul_dtype": run.model.matmul_dtype,
        "conv_compute_dtype": conv_dtype,
        **kernels,
        "cpu_model": cpu_model(),
        "fused_kernels": run.model.fused_kernels,
        "device": device_description(),
        "tensorflow": tf.__version__,
        "parameters": int(run.model.count_params()),
        "forward_flops_per_image": forward,
        "train_images_per_sec": train_ips,
        "likelihood_images_per_sec": lik_ips,
        "train_flops_per_sec": 3.0 * forward * train_ips,
        "likelihood_flops_per_sec": forward * lik_ips,
        "train_gflops_per_sec": train_gflops,
        "likelihood_gflops_per_sec": lik_gflops,
        "peak_gflops": peak,
        "peak_assumptions": assumptions,
        "train_fraction_of_peak": None if peak is None else train_gflops / peak,
        "likelihood_fraction_of_peak": None if peak is None else lik_gflops / peak,
        "train_first_step_sec": compile_train,
        "likelihood_first_call_sec": compile_lik,
    }


def config_for_benchmark(
    nr_resnet: int,
    nr_filters: int,
    nr_logistic_mix: int,
    batch_size: int,
    image_size: int,
    xla: bool,
    mixed_precision: str,
    base: UBMConfig | None = None,
) -> UBMConfig:
    """`base` (default: the paper's optimiser settings) with the benchmark's settings."""
    return dataclasses.replace(
        base or UBMConfig(),
        nr_resnet=nr_resnet,
        nr_filters=nr_filters,
        nr_logistic_mix=nr_logistic_mix,
        batch_size=batch_size,
        init_batch_size=batch_size,
        image_size=image_size,
        xla=xla,
        mixed_precision=mixed_precision,
    )


# The two throughputs both programs report (images per second).
COMPARED_MEASURES = ("train_images_per_sec", "likelihood_images_per_sec")


def compare_with_original(original: dict, ports: dict[str, dict]) -> dict:
    """One side-by-side run: the throughputs and the ratios port / original.

    Args:
      original: the original code's result (at least COMPARED_MEASURES).
      ports: matmul dtype -> the port's `benchmark_ubm` result of the same run.

    Returns:
      {"original": {measure: images/s}, "port": {dtype: {...}}, "ratio": {dtype: {...}}}.
    """
    for name, result in (("original", original), *ports.items()):
        missing = [m for m in COMPARED_MEASURES if not result.get(m)]
        if missing:
            raise ValueError(f"The {name} result lacks {', '.join(missing)}: {result}")
    return {
        "original": {m: round(original[m], 2) for m in COMPARED_MEASURES},
        "port": {d: {m: round(p[m], 2) for m in COMPARED_MEASURES} for d, p in ports.items()},
        "ratio": {
            d: {m: round(p[m] / original[m], 3) for m in COMPARED_MEASURES}
            for d, p in ports.items()
        },
    }


def median_ratios(runs: list[dict]) -> dict:
    """{dtype: {measure: median ratio}} over runs of `compare_with_original`."""
    if not runs:
        raise ValueError("No runs to summarise.")
    return {
        dtype: {
            m: round(float(np.median([run["ratio"][dtype][m] for run in runs])), 3)
            for m in COMPARED_MEASURES
        }
        for dtype in runs[0]["ratio"]
    }
