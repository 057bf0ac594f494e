r"""Trains the PixelCNN++ universal background model on pristine face crops.

Usage:
  python -m experiments.train_ubm --config=smoke --workdir=WORKDIR \
      [--train_data='WORKDIR/faces/train/original/*.tfrecord'] \
      [--val_data='WORKDIR/faces/val/original/*.tfrecord'] \
      [--strategy=default|mirrored|multiworker] [--mixed_precision=mixed_bfloat16] \
      [--matmul_dtype=bfloat16] [--xla] [--max_steps=N] [--batch_size=N] \
      [--learning_rate=X] [--image_size=N] [--allow_cpu] [--background [--perturbation_rate=0.2]]

The data default to the pristine train and val crops of WORKDIR (prepare_faces).
Writes `WORKDIR/ubm/`: config.json (first), checkpoints/ (model, optimizer, Polyak
averages, step), tensorboard/ and metrics.json. Running the same command again resumes
from the last checkpoint. `--batch_size` is the global batch, split over the strategy's
replicas (it must be a multiple of their number); a batch other than the config's
scales the learning rate linearly (lr x batch / config batch, Goyal et al. 2017)
unless `--learning_rate` is given. The paper configuration on a machine without a GPU
stops with the expected duration there unless `--allow_cpu`. Khodabakhsh & Busch
(BIOSIG 2020), Sec. 3: PixelCNN++ (R=5, F=160, M=10) trained on pristine training faces
only.

`--background` trains the config's background model instead, into
`WORKDIR/background_ubm/`: a PixelCNN++ on the same pristine crops with a share
(`perturbation_rate`) of their values replaced at random (Ren et al., NeurIPS 2019),
for the likelihood-ratio score of score_localisation.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags, logging

from experiments import cli
from experiments.pipeline import devices, run_log
from experiments.pipeline.workdir import Workdir
from pixelcnn_pp.config import MIXED_PRECISION_POLICIES, STRATEGIES, UBMConfig, validate_config

CONFIG, WORKDIR = cli.define_config_and_workdir(
    default_config=None, workdir_help="Work directory; the UBM goes to WORKDIR/ubm."
)
_EXAMPLE = Workdir("WORKDIR")
TRAIN_DATA = flags.DEFINE_string(
    "train_data",
    None,
    "Glob of pristine training face-crop TFRecords (default: "
    f"{_EXAMPLE.face_shards('train', 'original')}).",
)
VAL_DATA = flags.DEFINE_string(
    "val_data",
    None,
    f"Glob of validation face-crop TFRecords (default: {_EXAMPLE.face_shards('val', 'original')}"
    "; an empty value trains without validation).",
)
STRATEGY = flags.DEFINE_string(
    "strategy", "default", f"tf.distribute strategy: one of {', '.join(STRATEGIES)}."
)
MIXED_PRECISION = flags.DEFINE_string(
    "mixed_precision",
    None,
    "Keras precision policy: float32, mixed_bfloat16 or mixed_float16 (default: config).",
)
ALLOW_CPU = flags.DEFINE_boolean(
    "allow_cpu",
    False,
    "Train a full-size (non-smoke) UBM even when TensorFlow sees no GPU (weeks on a CPU).",
)
MATMUL_DTYPE = flags.DEFINE_enum(
    "matmul_dtype",
    None,
    ["float32", "bfloat16"],
    "bfloat16: only the convolutions in bfloat16 (AMX / AVX512-BF16 CPUs), everything else "
    "float32 (default: config, float32).",
)
XLA = flags.DEFINE_boolean("xla", None, "Compile the train step with XLA (default: config).")
MAX_STEPS = flags.DEFINE_integer("max_steps", None, "Cap on training steps (default: config).")
BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    None,
    "Global batch size, split over the replicas (default: config). Another batch than the "
    "config's scales the learning rate linearly unless --learning_rate is given.",
)
LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None, "Initial Adam learning rate (default: config, scaled with --batch_size)."
)
IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Side of the square face crops (default: config, 64)."
)
BACKGROUND = flags.DEFINE_boolean(
    "background",
    False,
    "Train the config's background model (perturbed crops) into WORKDIR/background_ubm "
    "instead of the UBM.",
)
PERTURBATION_RATE = flags.DEFINE_float(
    "perturbation_rate",
    None,
    "With --background: the probability that a training value is replaced by a random one "
    "(default: the config's background model).",
)
flags.mark_flag_as_required("config")


def scaled_learning_rate(config: UBMConfig, batch_size: int) -> float:
    """The linear scaling rule: the config's learning rate x batch_size / its batch."""
    return config.learning_rate * batch_size / config.batch_size


def _ubm_config(config: UBMConfig) -> UBMConfig:
    """The configuration's UBM settings with the flag overrides applied."""
    precision = MIXED_PRECISION.value
    if precision is not None and precision not in MIXED_PRECISION_POLICIES:
        raise app.UsageError(
            f"--mixed_precision={precision!r} is unknown: use float32, mixed_bfloat16 (TPUs, "
            "NVIDIA Ampere and newer) or mixed_float16."
        )
    overrides = {
        "max_steps": MAX_STEPS.value,
        "batch_size": BATCH_SIZE.value,
        "image_size": IMAGE_SIZE.value,
        "xla": XLA.value,
        "mixed_precision": "" if precision == "float32" else precision,
        "matmul_dtype": MATMUL_DTYPE.value,
        "learning_rate": LEARNING_RATE.value,
    }
    if (
        BATCH_SIZE.value is not None
        and LEARNING_RATE.value is None
        and BATCH_SIZE.value > 0
        and BATCH_SIZE.value != config.batch_size
    ):
        overrides["learning_rate"] = scaled_learning_rate(config, BATCH_SIZE.value)
        logging.info(
            "Global batch %d instead of %d: learning rate %.3g -> %.3g (linear scaling; "
            "--learning_rate sets it explicitly).",
            BATCH_SIZE.value,
            config.batch_size,
            config.learning_rate,
            overrides["learning_rate"],
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(config, **overrides)
    if BATCH_SIZE.value is not None:
        config = dataclasses.replace(
            config, init_batch_size=min(config.init_batch_size, config.batch_size)
        )
    try:
        validate_config(config)
    except ValueError as err:
        raise app.UsageError(f"{err} (check the --flags overriding the config)") from None
    return config


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    if STRATEGY.value not in STRATEGIES:
        raise app.UsageError(
            f"--strategy={STRATEGY.value!r} is unknown: use one of {', '.join(STRATEGIES)}."
        )
    workdir = cli.workdir(WORKDIR)
    train_data = workdir.face_shards("train", "original")
    if TRAIN_DATA.value is not None:
        if not TRAIN_DATA.value.strip():
            raise app.UsageError(
                "--train_data is empty: pass the glob of the pristine training crops, e.g. "
                f"{train_data!r}, or leave it out for that default."
            )
        train_data = TRAIN_DATA.value
    val_data = workdir.face_shards("val", "original") if VAL_DATA.value is None else VAL_DATA.value
    experiment = cli.experiment_config(CONFIG)
    if BACKGROUND.value:
        if experiment.background is None:
            raise app.UsageError(
                f"--config={CONFIG.value} defines no background model (its `background` "
                "field): add one, or train without --background."
            )
        base = experiment.background
        if PERTURBATION_RATE.value is not None:
            base = dataclasses.replace(base, perturbation_rate=PERTURBATION_RATE.value)
        if base.perturbation_rate <= 0:
            raise app.UsageError(
                "--background needs --perturbation_rate > 0 (a background model is trained on "
                f"perturbed crops), got {base.perturbation_rate}."
            )
        out_dir = workdir.background_ubm
    elif PERTURBATION_RATE.value is not None:
        raise app.UsageError(
            "--perturbation_rate applies to the background model only: add --background."
        )
    else:
        base, out_dir = experiment.ubm, workdir.ubm
    config = _ubm_config(base)
    # TensorFlow loads only once the flags are known to be usable, so --help and flag
    # mistakes answer at once; its CUDA start-up noise is muted on CPU-only machines.
    devices.quiet_tensorflow_logs()
    from data_prep import face_images
    from data_prep.face_images import CorruptShardError
    from experiments.pipeline import ubm
    from pixelcnn_pp import strategies, training
    from pixelcnn_pp.training import NonFiniteLossError

    strategy = strategies.make_strategy(STRATEGY.value)
    try:
        training.check_global_batch(config.batch_size, strategy, STRATEGY.value)
    except ValueError as err:
        raise app.UsageError(
            f"{err} Pass --batch_size (make reproduce UBM_BATCH_SIZE=) as a multiple of "
            f"{strategy.num_replicas_in_sync}."
        ) from None
    devices.log_devices("train_ubm")

    def training_images() -> int:
        examples = face_images.inspect_shards(train_data, expected_size=config.image_size)
        return training.total_steps(config, examples.num_examples, config.batch_size) * (
            config.batch_size
        )

    try:
        devices.require_gpu_or_allow(
            config,
            ALLOW_CPU.value,
            smoke=experiment.smoke,
            stage="train_ubm",
            images=training_images,
            training=True,
        )
        run_log.record_command(workdir.root)
        metrics = ubm.train_ubm(
            config,
            train_data,
            val_data.strip() or None,
            out_dir,
            strategy_name=STRATEGY.value,
            strategy=strategy,
        )
    except devices.CPUTooSlowError as err:
        raise app.UsageError(str(err)) from None
    except (FileNotFoundError, CorruptShardError, PermissionError, ValueError) as err:
        raise app.UsageError(str(err)) from None
    except OSError as err:
        raise app.UsageError(f"Cannot use --workdir={workdir.root!r}: {err}.") from None
    except NonFiniteLossError as err:
        logging.error("%s", err)
        sys.exit(1)
    logging.info(
        "%s at step %d: train %.4f bits/dim, validation %s bits/dim; %s",
        "Background model" if BACKGROUND.value else "UBM",
        metrics["step"],
        float("nan") if metrics["train_bits_per_dim"] is None else metrics["train_bits_per_dim"],
        "n/a" if metrics["val_bits_per_dim"] is None else f"{metrics['val_bits_per_dim']:.4f}",
        out_dir,
    )


if __name__ == "__main__":
    app.run(main)
