"""Per-pixel log-likelihood maps of every face crop under the trained UBM.

Usage:
  python -m experiments.extract_likelihoods --config=smoke --workdir=WORKDIR \
      [--ubm_dir=WORKDIR/ubm] [--faces_dir=WORKDIR/faces] [--allow_cpu] \
      [--background] [--splits=val,test] [--config.likelihoods.batch_size=64] \
      [--config.likelihoods.mixed_precision=float32|mixed_bfloat16|mixed_float16] \
      [--config.likelihoods.matmul_dtype=float32|bfloat16]

Writes `WORKDIR/likelihoods/<split>/<source>/<video>.tfrecord` (one shard per face
shard, every face feature kept plus `loglik_map` [64, 64] float32 nats and
`image_loglik`), `config.json` and `manifest.json`. Re-running skips finished videos.
A full-size (non-smoke) UBM on a machine without a GPU stops with the expected duration
there unless `--allow_cpu`. `--background` maps with the background model instead
(`WORKDIR/background_ubm`, train_ubm --background) into `WORKDIR/background_likelihoods/`,
the val and test splits only unless `--splits` says otherwise: the likelihood-ratio
score of score_localisation. How the UBM runs (crops per forward pass, precision) is the
config's `likelihoods` section, each field a `--config.likelihoods.<field>`. Library:
`experiments.pipeline.likelihoods`.
Khodabakhsh & Busch (BIOSIG 2020), Sec. 3.
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags, logging

from data_prep.files import read_json
from experiments import cli
from experiments.configs.base import ExperimentConfig
from experiments.pipeline import devices
from experiments.pipeline.workdir import CONFIG_FILE, MANIFEST_FILE, SHARD_SUFFIX
from pixelcnn_pp.config import UBMConfig

CONFIG, WORKDIR = cli.define_config_and_workdir(
    workdir_help="Work directory; output in WORKDIR/likelihoods."
)
UBM_DIR = flags.DEFINE_string(
    "ubm_dir", None, "Folder written by train_ubm (EMA checkpoint); default WORKDIR/ubm."
)
FACES_DIR = flags.DEFINE_string(
    "faces_dir", None, "Folder written by prepare_faces; default WORKDIR/faces."
)
BACKGROUND = flags.DEFINE_boolean(
    "background",
    False,
    "Map with the background model (default WORKDIR/background_ubm) into "
    "WORKDIR/background_likelihoods.",
)
SPLITS = flags.DEFINE_list(
    "splits",
    None,
    "Splits to map (default: every split; with --background: val,test, all that "
    "score_localisation reads).",
)
ALLOW_CPU = flags.DEFINE_boolean(
    "allow_cpu",
    False,
    "Map the crops with a full-size (non-smoke) UBM even when TensorFlow sees no GPU.",
)


def _ubm_settings(config: ExperimentConfig, ubm_dir: str) -> UBMConfig:
    """The architecture of the UBM in `ubm_dir` (its config.json), else the config's."""
    saved = (read_json(os.path.join(ubm_dir, CONFIG_FILE)) or {}).get("ubm")
    if not isinstance(saved, dict):
        return config.ubm
    fields = {f.name for f in dataclasses.fields(UBMConfig)}
    return dataclasses.replace(config.ubm, **{k: v for k, v in saved.items() if k in fields})


def _count_crops(faces_dir: str) -> int:
    """Face crops under `faces_dir`: the manifest's total, else the shards' records."""
    manifest = read_json(os.path.join(faces_dir, MANIFEST_FILE)) or {}
    total = manifest.get("totals", {}).get("all", {}).get("faces")
    if isinstance(total, int | float):
        return int(total)
    import tensorflow as tf

    from data_prep import files

    try:
        shards = files.list_shards(os.path.join(faces_dir, "*", "*", "*" + SHARD_SUFFIX))
    except FileNotFoundError:
        return 0
    return sum(sum(1 for _ in tf.data.TFRecordDataset(path)) for path in shards)


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    workdir = cli.workdir(WORKDIR)
    config = cli.experiment_config(CONFIG, workdir, own_sections=("likelihoods",))
    default_ubm = workdir.background_ubm if BACKGROUND.value else workdir.ubm
    ubm_dir = UBM_DIR.value or default_ubm
    output_dir = workdir.background_likelihoods if BACKGROUND.value else workdir.likelihoods
    if BACKGROUND.value and not os.path.isdir(ubm_dir):
        raise app.UsageError(
            f"No background model in {ubm_dir!r}: train it first (python -m "
            "experiments.train_ubm --background, same --config and --workdir), or pass "
            "--ubm_dir."
        )
    splits = SPLITS.value
    if splits is None and BACKGROUND.value:
        splits = ["val", "test"]
    if splits is not None:
        unknown = sorted(set(splits) - {"train", "val", "test"})
        if unknown or not splits:
            raise app.UsageError(
                f"--splits={','.join(SPLITS.value or [])!r}: use a comma-separated list of "
                "train, val and test."
            )
    faces_dir = FACES_DIR.value or workdir.faces
    # TensorFlow loads only once the flags are known to be usable, so --help and flag
    # mistakes answer at once; its CUDA start-up noise is muted on CPU-only machines.
    devices.quiet_tensorflow_logs()
    from experiments.pipeline import likelihoods

    devices.log_devices("extract_likelihoods")
    with cli.stage_errors(f"--workdir={workdir.root!r}"):
        devices.require_gpu_or_allow(
            _ubm_settings(config, ubm_dir),
            ALLOW_CPU.value,
            smoke=config.smoke,
            stage="extract_likelihoods",
            images=lambda: _count_crops(faces_dir),
            training=False,
        )
        cli.start_stage(workdir, config)
        manifest = likelihoods.extract_likelihoods(
            config,
            workdir,
            ubm_dir=ubm_dir,
            faces_dir=FACES_DIR.value,
            batch_size=config.likelihoods.batch_size,
            mixed_precision=config.likelihoods.mixed_precision,
            output_dir=output_dir,
            splits=splits,
            matmul_dtype=config.likelihoods.matmul_dtype,
        )
    last = manifest["last_run"]
    logging.info(
        "Likelihood maps: %d videos written, %d already done, %d bad shards skipped.",
        last["written"],
        last["skipped_complete"],
        len(last["bad_shards"]),
    )


if __name__ == "__main__":
    app.run(main)
