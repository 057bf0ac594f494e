"""Figures 3 and 4 of the paper from the saved likelihood maps.

Usage:
  python -m experiments.make_figures --workdir=WORKDIR

Writes `WORKDIR/results/fig3_loglik_histograms.png` (image log-likelihood, pristine
vs each method, val split) and `fig4_likelihood_maps.png` (example faces and their
likelihood maps, red = low likelihood), and refreshes `WORKDIR/results/run.json`.
Khodabakhsh & Busch (BIOSIG 2020), Figs. 3 and 4.
"""

from __future__ import annotations

from absl import app, flags

from experiments.pipeline import figures
from experiments.results_main import make_main

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the run.")
flags.mark_flag_as_required("workdir")

main = make_main(figures.make_figures, WORKDIR)

if __name__ == "__main__":
    app.run(main)
