"""Experiment configurations: `paper` (the paper's settings), `cpu` (real faces on a CPU)
and `smoke` (generated faces, minutes)."""

from __future__ import annotations

import importlib

from experiments.configs.base import ExperimentConfig

CONFIG_NAMES: tuple[str, ...] = ("paper", "cpu", "smoke")


def load_config(name: str) -> ExperimentConfig:
    """Returns the configuration called `name`.

    Raises:
      ValueError: `name` is not one of CONFIG_NAMES.
    """
    if name not in CONFIG_NAMES:
        raise ValueError(
            f"Unknown config {name!r}: choose one of {', '.join(CONFIG_NAMES)} "
            "(files under experiments/configs/)."
        )
    return importlib.import_module(f"experiments.configs.{name}").get_config()
