"""Figures 3 and 4 of the paper from the saved likelihood maps.

Usage:
  python -m experiments.make_figures --workdir=WORKDIR

Writes `WORKDIR/results/fig3_loglik_histograms.png` (image log-likelihood, pristine
vs each method, val split) and `fig4_likelihood_maps.png` (example faces and their
likelihood maps, red = low likelihood), and refreshes `WORKDIR/results/run.json`.
Khodabakhsh & Busch (BIOSIG 2020), Figs. 3 and 4.
"""

from __future__ import annotations

from absl import app, flags, logging

from experiments import figures, run_log

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the run.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        paths = figures.make_figures(WORKDIR.value)
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from e
    run_log.record_command(WORKDIR.value)
    paths.append(run_log.write_run_json(WORKDIR.value))
    for path in paths:
        logging.info("Wrote %s", path)


if __name__ == "__main__":
    app.run(main)
