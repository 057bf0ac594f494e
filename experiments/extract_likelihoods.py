"""Per-pixel log-likelihood maps of every face crop under the trained UBM.

Usage:
  python -m experiments.extract_likelihoods --ubm_dir=WORKDIR/ubm \
      --faces_dir=WORKDIR/faces --workdir=WORKDIR [--batch_size=64]

Writes `WORKDIR/likelihoods/<split>/<source>/<video>.tfrecord` (one shard per face
shard, every face feature kept plus `loglik_map` [64, 64] float32 nats and
`image_loglik`), `config.json` and `manifest.json`. Re-running skips finished videos.
Khodabakhsh & Busch (BIOSIG 2020), Sec. 3.
"""

from __future__ import annotations

from absl import app, flags, logging

from experiments.pipeline import likelihoods as likelihood_extraction
from experiments.pipeline import run_log

UBM_DIR = flags.DEFINE_string("ubm_dir", None, "Folder written by train_ubm (EMA checkpoint).")
FACES_DIR = flags.DEFINE_string("faces_dir", None, "Folder written by prepare_faces.")
WORKDIR = flags.DEFINE_string("workdir", None, "Work directory; output in WORKDIR/likelihoods.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Face crops per UBM forward pass.")
flags.mark_flags_as_required(["ubm_dir", "faces_dir", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if BATCH_SIZE.value < 1:
        raise app.UsageError(f"--batch_size must be at least 1, got {BATCH_SIZE.value}.")
    run_log.record_command(WORKDIR.value)
    try:
        manifest = likelihood_extraction.run(
            ubm_dir=UBM_DIR.value,
            faces_dir=FACES_DIR.value,
            workdir=WORKDIR.value,
            batch_size=BATCH_SIZE.value,
        )
    except (FileNotFoundError, ValueError) as e:
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
