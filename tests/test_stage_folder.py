"""The stage lifecycle (data_prep.stage_folder): settings first, never mixed, work resumed."""

from __future__ import annotations

import json
import os

import pytest

from data_prep.stage_folder import SettingsClashError, StageFolder, key_clashes, pending


def _folder(tmp_path) -> StageFolder:
    return StageFolder(str(tmp_path / "stage"), "test outputs", "use another folder")


def test_settings_are_written_first_and_a_clash_is_refused_by_name(tmp_path):
    folder = _folder(tmp_path)
    assert folder.claim({"size": 64, "note": "a"}, key_clashes(("size",))) is None
    with open(os.path.join(folder.path, "config.json")) as f:
        assert json.load(f) == {"size": 64, "note": "a"}
    # A setting outside the rule may change; the saved settings come back.
    saved = folder.claim({"size": 64, "note": "b"}, key_clashes(("size",)))
    assert saved == {"size": 64, "note": "a"}
    with pytest.raises(SettingsClashError, match=r"holds test outputs .*size: 64 -> 32.*another"):
        folder.claim({"size": 32, "note": "b"}, key_clashes(("size",)))
    # Refused: the saved settings stay as they were.
    assert folder.saved_settings() == {"size": 64, "note": "b"}


def test_check_writes_nothing(tmp_path):
    folder = _folder(tmp_path)
    assert folder.check({"size": 64}, key_clashes(("size",))) is None
    assert not os.path.exists(folder.path)


def test_a_stage_rule_decides_what_clashes(tmp_path):
    folder = _folder(tmp_path)
    folder.claim({"size": 64}, key_clashes(("size",)))

    def only_when_larger(saved, now):
        return ["larger"] if now["size"] > saved["size"] else []

    folder.claim({"size": 32}, only_when_larger)
    with pytest.raises(ValueError, match="larger"):
        folder.claim({"size": 128}, only_when_larger)


def test_finished_units_are_skipped_and_the_manifest_is_written(tmp_path):
    folder = _folder(tmp_path)
    os.makedirs(os.path.join(folder.path, "a"))
    open(os.path.join(folder.path, "a", "out.json"), "w").close()
    units = ["a", "b", "c"]
    assert folder.pending(units, lambda u: os.path.join(u, "out.json")) == ["b", "c"]
    absolute = [os.path.join(folder.path, u, "out.json") for u in units]
    assert pending(absolute, lambda p: p) == absolute[1:]
    assert folder.read_manifest() is None
    folder.write_manifest({"done": 1})
    assert folder.read_manifest() == {"done": 1}


def test_an_unwritable_folder_names_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    folder = StageFolder(str(blocker / "stage"), "x", setting="--out")
    with pytest.raises(PermissionError, match="--out=.*writable"):
        folder.claim({}, key_clashes(()))
