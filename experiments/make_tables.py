"""Tables 1 and 2 of the paper from the saved detection results, beside the paper's.

Usage:
  python -m experiments.make_tables --workdir=WORKDIR

Writes `WORKDIR/results/table1.{csv,md,tex}` (known attacks, with the paper's
baselines) and `table2.{csv,md,tex}` (leave-one-out, with the average), and
`WORKDIR/results/run.json` (configs, versions, seeds, every stage's command).
Paper (Khodabakhsh & Busch, BIOSIG 2020): Table 2 average 95.73%.
"""

from __future__ import annotations

from absl import app, flags

from experiments.pipeline import tables
from experiments.results_main import make_main

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the run.")
flags.mark_flag_as_required("workdir")

main = make_main(tables.make_tables, WORKDIR)

if __name__ == "__main__":
    app.run(main)
