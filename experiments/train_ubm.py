r"""Trains the PixelCNN++ universal background model on pristine face crops.

Usage:
  python -m experiments.train_ubm --config=smoke --workdir=WORKDIR \
      [--train_data='WORKDIR/faces/train/original/*.tfrecord'] \
      [--val_data='WORKDIR/faces/val/original/*.tfrecord'] \
      [--strategy=default|mirrored|multiworker] [--allow_cpu] [--background] \
      [--config.ubm.max_steps=N --config.ubm.batch_size=N --config.ubm.xla \
       --config.ubm.mixed_precision=mixed_bfloat16 --config.ubm.matmul_dtype=bfloat16 ...]

The data default to the pristine train and val crops of WORKDIR (prepare_faces).
Writes `WORKDIR/ubm/`: config.json (first), checkpoints/ (model, optimizer, Polyak
averages, step), tensorboard/ and metrics.json. Running the same command again resumes
from the last checkpoint. Every UBM setting is a `--config.ubm.<field>` override
(experiments.cli). `--config.ubm.batch_size` is the global batch, split over the
strategy's replicas (it must be a multiple of their number); a batch other than the
config's scales the learning rate linearly (lr x batch / config batch, Goyal et al.
2017) unless `--config.ubm.learning_rate` is given. The paper configuration on a machine
without a GPU stops with the expected duration there unless `--allow_cpu`. Khodabakhsh &
Busch (BIOSIG 2020), Sec. 3: PixelCNN++ (R=5, F=160, M=10) trained on pristine training
faces only.

`--background` trains the config's background model (`--config.background.<field>`)
instead, into `WORKDIR/background_ubm/`: a PixelCNN++ on the same pristine crops with a
share (`perturbation_rate`) of their values replaced at random (Ren et al., NeurIPS 2019),
for the likelihood-ratio score of score_localisation.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from experiments import cli
from experiments.pipeline import devices
from experiments.pipeline.workdir import Workdir
from pixelcnn_pp.config import STRATEGIES

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
ALLOW_CPU = flags.DEFINE_boolean(
    "allow_cpu",
    False,
    "Train a full-size (non-smoke) UBM even when TensorFlow sees no GPU (weeks on a CPU).",
)
BACKGROUND = flags.DEFINE_boolean(
    "background",
    False,
    "Train the config's background model (perturbed crops, --config.background.*) into "
    "WORKDIR/background_ubm instead of the UBM.",
)


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
    section = "background" if BACKGROUND.value else "ubm"
    experiment = cli.experiment_config(CONFIG, workdir, own_sections=(section,))
    config = getattr(experiment, section)
    if config is None:
        raise app.UsageError(
            f"--config={experiment.name} defines no background model (its `background` "
            "field): add one, or train without --background."
        )
    out_dir = workdir.background_ubm if BACKGROUND.value else workdir.ubm
    # TensorFlow loads only once the flags are known to be usable, so --help and flag
    # mistakes answer at once; its CUDA start-up noise is muted on CPU-only machines.
    devices.quiet_tensorflow_logs()
    from data_prep import face_images
    from experiments.pipeline import ubm
    from pixelcnn_pp import strategies, training
    from pixelcnn_pp.training import NonFiniteLossError

    strategy = strategies.make_strategy(STRATEGY.value)
    try:
        training.check_global_batch(config.batch_size, strategy, STRATEGY.value)
    except ValueError as err:
        raise app.UsageError(
            f"{err} Pass --config.{section}.batch_size (make reproduce UBM_BATCH_SIZE=) as "
            f"a multiple of {strategy.num_replicas_in_sync}."
        ) from None
    devices.log_devices("train_ubm")

    def training_images() -> int:
        examples = face_images.inspect_shards(train_data, expected_size=config.image_size)
        return training.total_steps(config, examples.num_examples, config.batch_size) * (
            config.batch_size
        )

    try:
        with cli.stage_errors(f"--workdir={workdir.root!r}"):
            devices.require_gpu_or_allow(
                config,
                ALLOW_CPU.value,
                smoke=experiment.smoke,
                stage="train_ubm",
                images=training_images,
                training=True,
            )
            cli.start_stage(workdir, experiment)
            metrics = ubm.train_ubm(
                config,
                train_data,
                val_data.strip() or None,
                out_dir,
                strategy_name=STRATEGY.value,
                strategy=strategy,
            )
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
