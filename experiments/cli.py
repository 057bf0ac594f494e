"""What every binary shares: `--config`, its dotted overrides, `--workdir` and their checks.

`define_config_and_workdir()` defines `--config` (a name in experiments/configs/),
`--workdir` and one flag per configuration field, named by its dotted path:
`--config.ubm.nr_filters=8`, `--config.faces.methods=Deepfakes,FaceSwap`,
`--config.background.xla` (booleans also take `=false`), `none` for a field that may be
None. A misspelt field is refused by absl with its name before `main` runs; a value of
the wrong type or out of range is an `app.UsageError`.

`experiment_config()` resolves the configuration once for every stage: the one recorded
in `WORKDIR/config.json` (written by the first stage run in that folder; `--config` may
then be left out, or must name the same configuration), else the named one; then the
overrides, the settings they imply (`configs.base.derive`) and the checks
(`configs.base.validate`). A stage may override only its own sections of a recorded
configuration; any other difference is refused, naming the fields, so the stages of one
work directory never mix settings. `start_stage()` records the configuration (if the
work directory has none yet) and the command line, just before a stage writes anything.
Only binaries import this module.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from absl import app, flags

from data_prep.files import read_json, write_json_atomically
from experiments.configs import CONFIG_NAMES, ExperimentConfig, load_config
from experiments.configs import base as config_base
from experiments.configs import overrides as config_overrides
from experiments.pipeline import devices, run_log
from experiments.pipeline.workdir import Workdir

# The flag holders of the dotted overrides, by field name (defined once per process).
_OVERRIDE_FLAGS: dict[str, flags.FlagHolder] = {}
_FIELD_TYPES = config_overrides.leaf_types(ExperimentConfig)


def define_override_flags() -> None:
    """One flag `config.<field>` per leaf of ExperimentConfig, unset by default (for a
    binary whose `--workdir` is optional; `define_config_and_workdir` calls it)."""
    if _OVERRIDE_FLAGS:
        return
    for name, kind in _FIELD_TYPES.items():
        if name in ("name", "smoke"):
            continue  # what the configuration is, not a setting
        flag = f"config.{name}"
        help_text = f"Override of the config's {name} ({config_overrides.type_name(kind)})."
        if kind is bool:
            holder = flags.DEFINE_boolean(flag, None, help_text)
        elif kind is int:
            holder = flags.DEFINE_integer(flag, None, help_text)
        elif kind is float:
            holder = flags.DEFINE_float(flag, None, help_text)
        else:  # str, tuples and fields that may be None: parsed by `overrides`
            holder = flags.DEFINE_string(flag, None, help_text)
        _OVERRIDE_FLAGS[name] = holder


def define_config_and_workdir(
    default_config: str | None = "smoke", workdir_help: str = "Work directory."
) -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """Defines `--config`, its `--config.<field>` overrides and the required `--workdir`.

    `default_config` is used when `--config` is not given and the work directory records
    no configuration; None makes `--config` required then.
    """
    config = flags.DEFINE_string(
        "config",
        default_config,
        f"Configuration: one of {', '.join(CONFIG_NAMES)} (experiments/configs/); default: "
        "the one recorded in WORKDIR/config.json"
        + (f", else {default_config}" if default_config else "")
        + ". Any field is overridden by its dotted name, e.g. --config.ubm.max_steps=50.",
    )
    workdir = flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flag_as_required("workdir")
    define_override_flags()
    return config, workdir


def overrides() -> dict[str, Any]:
    """The `--config.<field>` flags given on the command line, parsed, by field name."""
    values = {}
    for name, holder in _OVERRIDE_FLAGS.items():
        if not holder.present:
            continue
        value = holder.value
        if isinstance(value, str) and _FIELD_TYPES[name] is not str:
            try:
                value = config_overrides.parse_value(name, value, _FIELD_TYPES[name])
            except ValueError as err:
                raise app.UsageError(str(err)) from None
        values[name] = value
    return values


def recorded_config(workdir: Workdir) -> ExperimentConfig | None:
    """The configuration in `WORKDIR/config.json`, or None where there is none."""
    try:
        data = read_json(workdir.config)
        return None if data is None else config_overrides.from_json(ExperimentConfig, data)
    except (OSError, ValueError, TypeError) as err:
        raise app.UsageError(
            f"{workdir.config} cannot be read as a configuration ({err}): use a new --workdir."
        ) from None


def experiment_config(
    config_flag: flags.FlagHolder,
    workdir: Workdir | None = None,
    own_sections: Iterable[str] = (),
) -> ExperimentConfig:
    """The resolved, checked configuration of this run (see the module docstring).

    Args:
      config_flag: `--config` as returned by `define_config_and_workdir`.
      workdir: the work directory whose `config.json` is read (None: none is).
      own_sections: top-level fields (`ubm`, `faces`, ...) this stage may set to values
        other than the recorded ones; it records what it used in its own folder.

    Raises:
      app.UsageError: an unknown configuration, a field value that cannot work, or a
        difference from the recorded configuration outside `own_sections`.
    """
    recorded = None if workdir is None else recorded_config(workdir)
    if recorded is not None:
        if config_flag.present and config_flag.value != recorded.name:
            raise app.UsageError(
                f"--config={config_flag.value}, but {workdir.config} records the "
                f"{recorded.name!r} configuration: pass --config={recorded.name} (or leave "
                "--config out), or use another --workdir."
            )
        base = recorded
    else:
        if config_flag.value is None:
            raise app.UsageError(f"--config is required: one of {', '.join(CONFIG_NAMES)}.")
        try:
            base = load_config(config_flag.value)
        except ValueError as err:
            raise app.UsageError(str(err)) from None
    given = overrides()
    try:
        config = config_overrides.apply_overrides(base, given)
        config = config_base.derive(config, base, frozenset(given))
        config_base.validate(config)
    except (KeyError, ValueError) as err:
        raise app.UsageError(f"{err} (check --config and its --config.<field> overrides)") from None
    if recorded is not None:
        own = tuple(own_sections)
        mixed = {
            name: values
            for name, values in config_overrides.differences(recorded, config).items()
            if name.split(".")[0] not in own
        }
        if mixed:
            listed = "; ".join(
                f"{name}: {json.dumps(old, default=str)} recorded, "
                f"{json.dumps(new, default=str)} given"
                for name, (old, new) in mixed.items()
            )
            raise app.UsageError(
                f"{workdir.config} records other settings than this command gives ({listed}). "
                "Stages of one work directory share one configuration: drop these overrides, "
                "or use another --workdir."
            )
    return config


def workdir(workdir_flag: flags.FlagHolder) -> Workdir:
    """The layout of the work directory named by `--workdir`."""
    if not (workdir_flag.value or "").strip():
        raise app.UsageError("--workdir is empty: name the folder every stage writes into.")
    return Workdir(workdir_flag.value)


def record_config(workdir: Workdir, config: ExperimentConfig) -> None:
    """Writes the configuration to `WORKDIR/config.json` unless one is there already."""
    if not os.path.exists(workdir.config):
        write_json_atomically(workdir.config, config_overrides.to_json(config))


def start_stage(workdir: Workdir, config: ExperimentConfig | None) -> None:
    """What every stage does just before it writes: the configuration, its command line.

    Raises:
      app.UsageError: the work directory cannot be written.
    """
    with stage_errors(f"--workdir={workdir.root!r}"):
        if config is not None:
            record_config(workdir, config)
        run_log.record_command(workdir)


@contextlib.contextmanager
def stage_errors(target: str = "--workdir") -> Iterator[None]:
    """Turns what a stage raises for a bad input into an `app.UsageError` with its message.

    The libraries raise ValueError (and its kinds: a corrupt shard, a model folder, a
    split file), FileNotFoundError and PermissionError with a message that says what to
    do; any other OSError is about the folder the binary writes (`target`, e.g.
    "--out='x'"); a configuration that would take too long on a CPU says how long.
    Anything else (a bug, a non-finite loss) keeps its traceback.
    """
    try:
        yield
    except app.UsageError:
        raise
    except (FileNotFoundError, PermissionError, ValueError, devices.CPUTooSlowError) as err:
        raise app.UsageError(str(err)) from None
    except OSError as err:
        raise app.UsageError(f"Cannot use {target}: {err}.") from None


def reject_arguments(argv: list[str]) -> None:
    """Refuses positional arguments (a typo such as a missing `--`)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
