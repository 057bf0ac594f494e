"""The devices a stage runs on: quiet TensorFlow logs, one device line, a CPU guard.

* `quiet_tensorflow_logs()` (call before TensorFlow is imported): on a machine without
  an NVIDIA driver TensorFlow prints CUDA errors at start-up (`failed call to cuInit`);
  they say nothing the device line does not, so C++ logging below FATAL is muted there
  (`TF_CPP_MIN_LOG_LEVEL=3`), and below ERROR on a GPU machine (`2`), where CUDA errors
  matter. A value the user set is kept.
* `log_devices(stage)`: one log line naming the GPUs a stage uses, or saying that it
  runs on N CPU cores without a GPU.
* `require_gpu_or_allow(...)`: the paper-sized UBM on a CPU takes weeks; such a run
  stops before any work with the duration expected on this CPU, estimated from the
  conv FLOP count (`pixelcnn_pp.flops`) of the configured run and one measured
  forward + backward step of the real model here, and says how to install the GPU
  build. `allow_cpu` runs it anyway; smoke configurations never ask.

Nothing here imports TensorFlow at module level, so binaries can import it first.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Callable

from absl import logging

from pixelcnn_pp.config import UBMConfig

GPU_INSTALL_COMMAND = "make install GPU=1"
_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
_logged_stages: set[str] = set()


class CPUTooSlowError(RuntimeError):
    """The configured run would take too long on this CPU; the message says how long."""


def nvidia_driver_present(proc_dir: str = "/proc/driver/nvidia") -> bool:
    """Whether an NVIDIA driver is loaded (`proc_dir` exists, or `nvidia-smi -L` works)."""
    if os.path.isdir(proc_dir):
        return True
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def quiet_tensorflow_logs() -> str:
    """Sets TF_CPP_MIN_LOG_LEVEL unless the user has; call before importing TensorFlow.

    Returns:
      The value in effect: the user's, "3" without an NVIDIA driver (the CUDA start-up
      errors are noise there), "2" with one (warnings muted, errors kept).
    """
    if _LOG_LEVEL_VARIABLE not in os.environ:
        os.environ[_LOG_LEVEL_VARIABLE] = "2" if nvidia_driver_present() else "3"
    return os.environ[_LOG_LEVEL_VARIABLE]


def device_summary() -> str:
    """'2 GPUs: NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3' or 'no GPU: running on 8 CPU cores'.

    Imports TensorFlow.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"no GPU: running on {os.cpu_count()} CPU cores"
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {', '.join(names)}"


def log_devices(stage: str) -> str:
    """Logs (once per stage and process) the devices `stage` runs on; returns the line."""
    line = device_summary()
    if stage not in _logged_stages:
        _logged_stages.add(stage)
        logging.info("%s runs on %s.", stage, line)
    return line


def measure_cpu_flops_per_sec(config: UBMConfig, batch_size: int = 1) -> float:
    """Conv/nin FLOP/s of one forward + backward step of `config`'s model here.

    Builds the model (float32), runs one untimed step (weights, kernels), then times
    one eager forward + backward pass on `batch_size` random images and divides the
    step's FLOPs (3 forward passes, as in `pixelcnn_pp.benchmark`) by its time.
    """
    import numpy as np
    import tensorflow as tf

    from pixelcnn_pp import flops, run_folder
    from pixelcnn_pp.distributions import discretized_mix_logistic_loss
    from pixelcnn_pp.model import images_to_model_input

    config = dataclasses.replace(config, mixed_precision="")
    model = run_folder.build_model(config)
    size = config.image_size
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8))

    def step() -> None:
        x = images_to_model_input(images)
        with tf.GradientTape() as tape:
            loss = discretized_mix_logistic_loss(x, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        float(tf.add_n([tf.reduce_sum(g) for g in grads]))  # waits for the step

    step()
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    forward = flops.pixelcnn_pp_forward_flops(
        config.nr_resnet, config.nr_filters, config.nr_logistic_mix, size, size
    )
    return 3.0 * forward * batch_size / seconds


def describe_duration(seconds: float) -> str:
    """'about 41 days', 'about 5.2 hours', 'about 12 minutes'."""
    if seconds >= 2 * 86400:
        return f"about {seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"about {seconds / 3600:.1f} hours"
    if seconds < 90:
        return "about a minute"
    return f"about {seconds / 60:.0f} minutes"


def run_flops(config: UBMConfig, images: int, training: bool) -> float:
    """Conv/nin FLOPs of a run over `images` images (3 passes each when training)."""
    from pixelcnn_pp import flops

    size = config.image_size
    forward = flops.pixelcnn_pp_forward_flops(
        config.nr_resnet, config.nr_filters, config.nr_logistic_mix, size, size
    )
    return float(forward) * images * (3.0 if training else 1.0)


def require_gpu_or_allow(
    config: UBMConfig,
    allow_cpu: bool,
    *,
    smoke: bool,
    stage: str,
    images: Callable[[], int],
    training: bool,
    gpus_present: Callable[[], bool] | None = None,
    measure: Callable[[UBMConfig], float] = measure_cpu_flops_per_sec,
) -> None:
    """Stops a full-size UBM run on a machine without a GPU unless `allow_cpu`.

    Args:
      config: the UBM settings of the run.
      allow_cpu: run on the CPU anyway (`--allow_cpu`).
      smoke: a smoke configuration (CPU-sized): never stopped.
      stage: the stage's name for the messages, e.g. "train_ubm".
      images: called only when the run would be stopped: the images the run processes
        (training: steps x global batch; likelihood maps: the face crops).
      training: forward + backward per image (True) or one forward pass (False).
      gpus_present: whether TensorFlow sees a GPU (default: asks TensorFlow).
      measure: FLOP/s of one step here (default: `measure_cpu_flops_per_sec`).

    Raises:
      CPUTooSlowError: no GPU and not allowed; the message gives the expected duration
        on this CPU and the GPU install command.
    """
    if smoke:
        return
    if gpus_present is None:
        import tensorflow as tf

        gpus_present = lambda: bool(tf.config.list_physical_devices("GPU"))  # noqa: E731
    if gpus_present():
        return
    if allow_cpu:
        logging.warning(
            "%s: no GPU, running the %s-filter UBM on %d CPU cores as asked (--allow_cpu).",
            stage,
            config.nr_filters,
            os.cpu_count(),
        )
        return
    count = images()
    logging.info("%s: no GPU; timing one UBM step on this CPU (a minute or so).", stage)
    rate = measure(config)
    seconds = run_flops(config, count, training) / rate
    work = (
        f"{count} training images (steps x global batch)"
        if training
        else f"{count} face crops (one forward pass each)"
    )
    raise CPUTooSlowError(
        f"{stage}: TensorFlow sees no GPU, and this UBM (R={config.nr_resnet}, "
        f"F={config.nr_filters}) over {work} would take {describe_duration(seconds)} on "
        f"this CPU ({os.cpu_count()} cores, {rate / 1e9:.1f} GFLOP/s measured on one step). "
        f"On a machine with an NVIDIA GPU, install the GPU build with `{GPU_INSTALL_COMMAND}` "
        "(see 'Running on GPUs' in the README); to run here anyway pass --allow_cpu "
        "(make reproduce ALLOW_CPU=1)."
    )
