"""Tables 1 and 2 of the paper from the saved detection results, beside the paper's.

Usage:
  python -m experiments.make_tables --workdir=WORKDIR

Writes `WORKDIR/results/table1.{csv,md,tex}` (known attacks, with the paper's
baselines) and `table2.{csv,md,tex}` (leave-one-out, with the average), and
`WORKDIR/results/run.json` (configs, versions, seeds, every stage's command).
Paper (Khodabakhsh & Busch, BIOSIG 2020): Table 2 average 95.73%.
"""

from __future__ import annotations

from absl import app, flags, logging

from experiments import run_log, tables

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the run.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        paths = tables.make_tables(WORKDIR.value)
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from e
    run_log.record_command(WORKDIR.value)
    paths.append(run_log.write_run_json(WORKDIR.value))
    for path in paths:
        logging.info("Wrote %s", path)


if __name__ == "__main__":
    app.run(main)
