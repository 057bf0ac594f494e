"""The lifecycle every stage folder shares: settings first, never mixed, work resumed.

Each stage of the pipeline (face crops, UBM, likelihood maps, detectors) writes one
folder, and treats it the same way:

1. `claim(settings, clashes)` (`check` alone writes nothing): before anything else is
   written, the folder's
   `config.json` is compared with the settings of this run; where the settings that
   decide the outputs differ (the stage's own `clashes` names them), the run is refused
   with a message that says what differs and what to do, so that one folder never holds
   outputs of two settings. Then the settings are written (first, atomically).
2. `pending(units, output_of)`: a unit of work (a video, a method) is finished when its
   output file exists; outputs are renamed into place only when complete
   (`data_prep.files`), so an interrupted run redoes at most the units in flight.
3. `write_manifest(manifest)`: what the stage did, atomically, at the end.

Binaries translate the errors (`experiments.cli.stage_errors`); this module knows no
flags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from data_prep.files import check_writable, read_json, write_json_atomically

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"

Unit = TypeVar("Unit")
# (saved settings, this run's settings) -> a description of each difference that forbids
# adding this run's outputs to the folder ([] where they may be mixed).
Clashes = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


class SettingsClashError(ValueError):
    """A stage folder holds outputs made with other settings than this run's."""


def key_clashes(keys: Sequence[str]) -> Clashes:
    """The clash rule "these settings must be equal", each difference as `key: old -> new`."""

    def clashes(saved: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
        return [
            f"{key}: {saved.get(key)!r} -> {settings.get(key)!r}"
            for key in keys
            if saved.get(key) != settings.get(key)
        ]

    return clashes


def pending(units: Iterable[Unit], output_of: Callable[[Unit], str]) -> list[Unit]:
    """The units whose output file `output_of(unit)` does not exist yet, in order."""
    return [unit for unit in units if not os.path.isfile(output_of(unit))]


@dataclasses.dataclass(frozen=True)
class StageFolder:
    """One stage's output folder.

    path: the folder (e.g. `WORKDIR/likelihoods`); holds: what the folder holds, for
    messages ("likelihood maps"); remedy: what a user whose settings clash can do;
    setting: how the user chose the folder, named when it cannot be written.
    """

    path: str
    holds: str
    remedy: str = "use a new --workdir, or delete that folder to start it over"
    setting: str = "--workdir"

    @property
    def settings_path(self) -> str:
        return os.path.join(self.path, CONFIG_FILE)

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.path, MANIFEST_FILE)

    def saved_settings(self) -> dict[str, Any] | None:
        """The settings a previous run wrote, or None where there are none."""
        return read_json(self.settings_path)

    def check(self, settings: Mapping[str, Any], clashes: Clashes) -> dict[str, Any] | None:
        """Refuses `settings` where they clash with the saved ones; writes nothing.

        Returns:
          The saved settings (None where there are none).

        Raises:
          SettingsClashError: the folder holds outputs of clashing settings.
        """
        saved = self.saved_settings()
        if saved is not None:
            found = clashes(saved, settings)
            if found:
                raise SettingsClashError(
                    f"{self.path!r} holds {self.holds} made with other settings "
                    f"({'; '.join(found)}): {self.remedy}."
                )
        return saved

    def claim(
        self, settings: Mapping[str, Any], clashes: Clashes, *, sort_keys: bool = False
    ) -> dict[str, Any] | None:
        """Writes `settings` to `config.json` unless they clash with the saved ones.

        Args:
          settings: this run's settings (JSON-serialisable).
          clashes: the stage's rule (`key_clashes`, or its own).
          sort_keys: write `config.json` with sorted keys.

        Returns:
          The settings saved before (None on a first run).

        Raises:
          SettingsClashError: the folder holds outputs of clashing settings.
          PermissionError: the folder cannot be written.
        """
        check_writable(self.path, self.setting)
        saved = self.check(settings, clashes)
        write_json_atomically(self.settings_path, dict(settings), sort_keys=sort_keys)
        return saved

    def done(self, output: str) -> bool:
        """Whether the output file `output` (relative to the folder, or absolute) exists."""
        return os.path.isfile(os.path.join(self.path, output))

    def pending(self, units: Iterable[Unit], output_of: Callable[[Unit], str]) -> list[Unit]:
        """The units whose output file (`output_of(unit)`, see `done`) is not there yet."""
        return pending(units, lambda unit: os.path.join(self.path, output_of(unit)))

    def write_manifest(self, manifest: Mapping[str, Any]) -> str:
        """Writes `manifest.json` atomically; returns its path."""
        write_json_atomically(self.manifest_path, dict(manifest))
        return self.manifest_path

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None where the stage has not written one."""
        return read_json(self.manifest_path)
