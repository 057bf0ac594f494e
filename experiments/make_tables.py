"""Tables 1 and 2 of the paper from the saved detection results, beside the paper's.

Usage:
  python -m experiments.make_tables --workdir=WORKDIR

The configuration is the one WORKDIR/config.json records (`--config`, if given, must
name it); what the results say about the run comes from what each stage saved.

Writes `WORKDIR/results/table1.{csv,md,tex}` (known attacks, with the paper's
baselines) and `table2.{csv,md,tex}` (leave-one-out, with the average), one column per
method of the run, and `WORKDIR/results/run.json` (configs, versions, seeds, every
stage's command). Library: `experiments.pipeline.tables`. Paper (Khodabakhsh & Busch,
BIOSIG 2020): Table 2 average 95.73%.
"""

from __future__ import annotations

from absl import app

from experiments.cli import define_config_and_workdir
from experiments.pipeline.workdir import Workdir
from experiments.results_cli import make_main

CONFIG, WORKDIR = define_config_and_workdir(workdir_help="Work directory of the run.")


def build(workdir: Workdir) -> list[str]:
    """Writes the tables; returns their paths."""
    from experiments.pipeline import tables  # TensorFlow: only once the flags are usable

    return tables.make_tables(workdir)


main = make_main(build, CONFIG, WORKDIR)

if __name__ == "__main__":
    app.run(main)
