"""The dotted `--config.<field>` overrides: parsing, type checks, the recorded config."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from experiments.configs import base, load_config
from experiments.configs import overrides as ov
from experiments.configs.base import ExperimentConfig

SMOKE = load_config("smoke")


def test_every_nested_field_has_a_dotted_name_and_type():
    leaves = ov.leaf_types(ExperimentConfig)
    assert leaves["ubm.nr_filters"] is int
    assert leaves["background.perturbation_rate"] is float
    assert leaves["faces.fast.keyframe_interval"] is int
    assert leaves["likelihoods.batch_size"] is int
    assert "ubm" not in leaves and "background" not in leaves


def test_overrides_replace_along_the_path_and_keep_the_rest():
    config = ov.apply_overrides(SMOKE, {"ubm.nr_filters": 8, "faces.fast.refine_depth": 3})
    assert config.ubm.nr_filters == 8 and config.faces.fast.refine_depth == 3
    assert config.ubm.max_steps == SMOKE.ubm.max_steps
    assert config.background == SMOKE.background  # a sibling section is untouched
    assert ov.differences(SMOKE, config) == {
        "faces.fast.refine_depth": (SMOKE.faces.fast.refine_depth, 3),
        "ubm.nr_filters": (32, 8),
    }


def test_a_misspelt_field_is_refused_with_its_name():
    with pytest.raises(ov.UnknownFieldError, match="no field 'ubm.nr_filterz'.*nr_filters"):
        ov.apply_overrides(SMOKE, {"ubm.nr_filterz": 8})


def test_values_of_the_wrong_type_are_refused():
    with pytest.raises(ValueError, match=r"--config.ubm.max_steps='two' is not a int"):
        ov.parse_value("ubm.max_steps", "two", int)
    with pytest.raises(ValueError, match="config.ubm.nr_filters must be a int"):
        ov.apply_overrides(SMOKE, {"ubm.nr_filters": "8"})
    with pytest.raises(ValueError, match="config.ubm.xla must be a bool"):
        ov.apply_overrides(SMOKE, {"ubm.xla": 1})


def test_strings_parse_into_tuples_and_none():
    kind = ov.leaf_types(ExperimentConfig)["faces.methods"]
    assert ov.parse_value("faces.methods", "Deepfakes, FaceSwap", kind) == (
        "Deepfakes",
        "FaceSwap",
    )
    assert ov.parse_value("faces.methods", "", kind) == ()
    assert ov.parse_value("faces.methods", "none", kind) is None
    assert ov.parse_value("ubm.xla", "false", bool) is False


def test_a_section_that_is_none_cannot_be_overridden():
    config = dataclasses.replace(SMOKE, background=None)
    with pytest.raises(ValueError, match="no 'background' section"):
        ov.apply_overrides(config, {"background.max_steps": 2})


def test_json_round_trip():
    data = json.loads(json.dumps(ov.to_json(SMOKE)))
    assert ov.from_json(ExperimentConfig, data) == SMOKE


def test_a_batch_override_scales_the_learning_rate_unless_it_is_given():
    bigger = ov.apply_overrides(SMOKE, {"ubm.batch_size": 32})
    derived = base.derive(bigger, SMOKE, frozenset({"ubm.batch_size"}))
    assert derived.ubm.learning_rate == pytest.approx(SMOKE.ubm.learning_rate * 4)
    both = ov.apply_overrides(SMOKE, {"ubm.batch_size": 32, "ubm.learning_rate": 0.5})
    kept = base.derive(both, SMOKE, frozenset({"ubm.batch_size", "ubm.learning_rate"}))
    assert kept.ubm.learning_rate == 0.5
    smaller = ov.apply_overrides(SMOKE, {"ubm.batch_size": 4})
    assert base.derive(smaller, SMOKE, frozenset({"ubm.batch_size"})).ubm.init_batch_size == 4


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ubm.nr_filters": 0}, "ubm: nr_filters must be at least 1"),
        ({"ubm.perturbation_rate": 0.2}, "applies to the background model only"),
        ({"background.perturbation_rate": 0.0}, "background.perturbation_rate must be > 0"),
        ({"likelihoods.matmul_dtype": "fp8"}, "likelihoods.matmul_dtype='fp8' is unknown"),
        ({"detector.epochs": 0}, "detector.epochs must be at least 1"),
    ],
)
def test_validation_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        base.validate(ov.apply_overrides(SMOKE, overrides))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.make_synthetic_ffpp", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_binary_refuses_misspelt_and_mistyped_fields_before_writing(tmp_path):
    work = tmp_path / "work"
    misspelt = _run("--config=smoke", f"--workdir={work}", "--config.synthetic.identitiez=6")
    assert misspelt.returncode != 0 and "config.synthetic.identitiez" in misspelt.stderr
    mistyped = _run("--config=smoke", f"--workdir={work}", "--config.synthetic.frames=many")
    assert mistyped.returncode != 0 and "--config.synthetic.frames=many" in mistyped.stderr
    assert "Traceback" not in misspelt.stderr + mistyped.stderr
    assert not work.exists()


def test_recorded_config_is_read_and_other_sections_are_not_mixed(tmp_path):
    work = tmp_path / "work"
    out = tmp_path / "ffpp"
    first = _run(
        "--config=smoke",
        f"--workdir={work}",
        f"--out={out}",
        "--config.synthetic.identities=6",
        "--config.synthetic.frames=2",
        "--config.synthetic.compressions=raw",
        "--config.ubm.max_steps=5",
    )
    assert first.returncode == 0, first.stderr[-2000:]
    recorded = json.loads((work / "config.json").read_text())
    assert recorded["ubm"]["max_steps"] == 5 and recorded["synthetic"]["identities"] == 6
    # Another configuration's name, or another UBM setting from a stage that is not the
    # UBM's, is refused with the field's name; the work directory keeps its record.
    other = _run("--config=paper", f"--workdir={work}", f"--out={out}")
    assert other.returncode != 0 and "records the 'smoke' configuration" in other.stderr
    mixed = _run(f"--workdir={work}", f"--out={out}", "--config.ubm.max_steps=7")
    assert mixed.returncode != 0
    assert "ubm.max_steps: 5 recorded, 7 given" in mixed.stderr
    assert json.loads((work / "config.json").read_text()) == recorded
