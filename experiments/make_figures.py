"""Figures 3 and 4 of the paper from the saved likelihood maps.

Usage:
  python -m experiments.make_figures --workdir=WORKDIR

The configuration is the one WORKDIR/config.json records (`--config`, if given, must
name it); what the results say about the run comes from what each stage saved.

Writes `WORKDIR/results/fig3_loglik_histograms.png` (image log-likelihood, pristine
vs each method found, val split) and `fig4_likelihood_maps.png` (example faces and
their likelihood maps, red = low likelihood), and refreshes `WORKDIR/results/run.json`.
Library: `experiments.pipeline.figures`. Khodabakhsh & Busch (BIOSIG 2020), Figs. 3, 4.
"""

from __future__ import annotations

from absl import app

from experiments.cli import define_config_and_workdir
from experiments.pipeline.workdir import Workdir
from experiments.results_cli import make_main

CONFIG, WORKDIR = define_config_and_workdir(workdir_help="Work directory of the run.")


def build(workdir: Workdir) -> list[str]:
    """Draws the figures; returns their paths."""
    from experiments.pipeline import figures  # TensorFlow: only once the flags are usable

    return figures.make_figures(workdir)


main = make_main(build, CONFIG, WORKDIR)

if __name__ == "__main__":
    app.run(main)
