"""What every binary shares: the `--config` and `--workdir` flags and their checks.

Each binary defines these two through `define_config_and_workdir()` and its own named
overrides; it then calls `experiment_config()` and `workdir()`, which turn a bad value
into an `app.UsageError` that says what to do. Only binaries import this module.
"""

from __future__ import annotations

from absl import app, flags

from experiments.configs import CONFIG_NAMES, ExperimentConfig, load_config
from experiments.pipeline.workdir import Workdir


def define_config_and_workdir(
    default_config: str | None = "smoke", workdir_help: str = "Work directory."
) -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """Defines `--config` (a name in experiments/configs/) and the required `--workdir`."""
    config = flags.DEFINE_string(
        "config",
        default_config,
        f"Configuration: one of {', '.join(CONFIG_NAMES)} (experiments/configs/).",
    )
    workdir = flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flag_as_required("workdir")
    return config, workdir


def experiment_config(config_flag: flags.FlagHolder) -> ExperimentConfig:
    """The configuration named by `--config`; an unknown name is a usage error."""
    if config_flag.value is None:
        raise app.UsageError(f"--config is required: one of {', '.join(CONFIG_NAMES)}.")
    try:
        return load_config(config_flag.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None


def workdir(workdir_flag: flags.FlagHolder) -> Workdir:
    """The layout of the work directory named by `--workdir`."""
    if not (workdir_flag.value or "").strip():
        raise app.UsageError("--workdir is empty: name the folder every stage writes into.")
    return Workdir(workdir_flag.value)


def reject_arguments(argv: list[str]) -> None:
    """Refuses positional arguments (a typo such as a missing `--`)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
