"""The shared `main` of the binaries that build `results/` from saved files.

`make_tables` and `make_figures` differ only in what they build; both refuse stray
arguments, turn a missing or malformed input into a usage error, record their
command and refresh `results/run.json`.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import app, flags, logging

from experiments.pipeline import run_log


def make_main(
    build: Callable[[str], list[str]], workdir: flags.FlagHolder
) -> Callable[[list[str]], None]:
    """Returns an absl `main` that runs `build(workdir)` and logs the files written."""

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        try:
            paths = build(workdir.value)
        except (FileNotFoundError, ValueError) as e:
            raise app.UsageError(str(e)) from e
        run_log.record_command(workdir.value)
        paths.append(run_log.write_run_json(workdir.value))
        for path in paths:
            logging.info("Wrote %s", path)

    return main
