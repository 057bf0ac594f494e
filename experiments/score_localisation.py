"""Localisation against the manipulation masks: do the likelihood maps point at the
manipulated pixels?

Usage:
  python -m experiments.score_localisation --config=smoke --workdir=WORKDIR

Reads `WORKDIR/likelihoods/` (maps with the masks the face stage cropped); writes
`WORKDIR/results/localisation.{csv,md,tex}` (per method and score: pixel AUC and AP,
pooled and per frame, with bootstrap intervals over videos; IoU at a val-chosen
threshold; a shuffled-mask control) and `fig_localisation.png`, and refreshes
`WORKDIR/results/run.json`. Library: `experiments.pipeline.localisation`.
"""

from __future__ import annotations

from absl import app

from experiments import cli
from experiments.pipeline.workdir import Workdir
from experiments.results_cli import make_main

CONFIG, WORKDIR = cli.define_config_and_workdir(workdir_help="Work directory of the run.")


def build(workdir: Workdir) -> list[str]:
    """Scores the localisation; returns the files written."""
    from experiments.pipeline import localisation  # TensorFlow: only once the flags are usable

    config = cli.experiment_config(CONFIG, workdir)
    return localisation.score_localisation(
        workdir, config_name=config.name, bootstrap_samples=config.detector.bootstrap_samples
    )


main = make_main(build, CONFIG, WORKDIR)

if __name__ == "__main__":
    app.run(main)
