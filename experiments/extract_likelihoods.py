"""Per-pixel log-likelihood maps of every face crop under the trained UBM.

Usage:
  python -m experiments.extract_likelihoods --config=smoke --workdir=WORKDIR \
      [--ubm_dir=WORKDIR/ubm] [--faces_dir=WORKDIR/faces] [--batch_size=64]

Writes `WORKDIR/likelihoods/<split>/<source>/<video>.tfrecord` (one shard per face
shard, every face feature kept plus `loglik_map` [64, 64] float32 nats and
`image_loglik`), `config.json` and `manifest.json`. Re-running skips finished videos.
Library: `experiments.pipeline.likelihoods`. Khodabakhsh & Busch (BIOSIG 2020), Sec. 3.
"""

from __future__ import annotations

from absl import app, flags, logging

from experiments import cli
from experiments.pipeline import run_log

CONFIG, WORKDIR = cli.define_config_and_workdir(
    workdir_help="Work directory; output in WORKDIR/likelihoods."
)
UBM_DIR = flags.DEFINE_string(
    "ubm_dir", None, "Folder written by train_ubm (EMA checkpoint); default WORKDIR/ubm."
)
FACES_DIR = flags.DEFINE_string(
    "faces_dir", None, "Folder written by prepare_faces; default WORKDIR/faces."
)
BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Face crops per UBM forward pass.")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    if BATCH_SIZE.value < 1:
        raise app.UsageError(f"--batch_size must be at least 1, got {BATCH_SIZE.value}.")
    config = cli.experiment_config(CONFIG)
    workdir = cli.workdir(WORKDIR)
    # TensorFlow loads only once the flags are known to be usable, so --help and flag
    # mistakes answer at once.
    from experiments.pipeline import likelihoods

    run_log.record_command(workdir)
    try:
        manifest = likelihoods.extract_likelihoods(
            config,
            workdir,
            ubm_dir=UBM_DIR.value,
            faces_dir=FACES_DIR.value,
            batch_size=BATCH_SIZE.value,
        )
    except (FileNotFoundError, PermissionError, ValueError) as e:
        raise app.UsageError(str(e)) from e
    last = manifest["last_run"]
    logging.info(
        "Likelihood maps: %d videos written, %d already done, %d bad shards skipped.",
        last["written"],
        last["skipped_complete"],
        len(last["bad_shards"]),
    )


if __name__ == "__main__":
    app.run(main)
