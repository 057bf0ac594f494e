"""The shared `main` of the binaries that build `results/` from saved files.

`make_tables` and `make_figures` differ only in what they build; both take `--config`
and `--workdir` (`experiments.cli`), refuse stray arguments, turn a missing or
malformed input into a usage error, record their command and refresh `results/run.json`.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import flags, logging

from experiments import cli
from experiments.pipeline import devices, run_log
from experiments.pipeline.workdir import Workdir


def make_main(
    build: Callable[[Workdir], list[str]],
    config: flags.FlagHolder,
    workdir: flags.FlagHolder,
) -> Callable[[list[str]], None]:
    """Returns an absl `main` that runs `build(workdir)` and logs the files written.

    `--config` (default: the one WORKDIR/config.json records) is checked like every
    binary's; what the tables and figures say about the run comes from the
    configurations its stages saved.
    """

    def main(argv: list[str]) -> None:
        cli.reject_arguments(argv)
        devices.quiet_tensorflow_logs()  # before TensorFlow loads (its CUDA noise on CPUs)
        layout = cli.workdir(workdir)
        cli.experiment_config(config, layout)
        with cli.stage_errors(f"--workdir={layout.root!r}"):
            paths = build(layout)
        cli.start_stage(layout, None)
        paths.append(run_log.write_run_json(layout))
        for path in paths:
            logging.info("Wrote %s", path)

    return main
