"""`make reproduce`'s script refuses bad settings with a clear message, before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT


def _reproduce(tmp_path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, "WORKDIR": str(tmp_path / "work"), **env}
    return subprocess.run(
        ["bash", "experiments/reproduce.sh"],
        cwd=PROJECT_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FFPP_ROOT": "{tmp}", "SPLITS_DIR": ""}, "SPLITS_DIR is required with FFPP_ROOT"),
        ({"FFPP_ROOT": "{tmp}/missing", "SPLITS_DIR": "{tmp}"}, "is not a folder"),
        ({"CONFIG": "bogus"}, "unknown CONFIG='bogus'"),
        ({"COMPRESSION": "c99"}, "COMPRESSION must be raw, c23 or c40"),
        ({"STRATEGY": "ring"}, "STRATEGY must be default, mirrored or multiworker"),
        ({"ALLOW_CPU": "yes"}, "ALLOW_CPU must be 1 or 0"),
        ({"DATASET": "imagenet"}, "DATASET must be generated, ffpp, crops"),
        ({"DATASET": "crops"}, "DATASET=crops needs DATASET_ROOT"),
        ({"DATASET": "folder", "DATASET_ROOT": "{tmp}/missing"}, "does not exist"),
        ({"DETECTION": "exact"}, "DETECTION is now FACE_FINDER"),
    ],
)
def test_bad_settings_are_refused(tmp_path, env, message):
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    result = _reproduce(tmp_path, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "work").exists()  # refused before writing anything


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PRECISION": "fp8"}, "Unknown mixed_precision 'fp8'"),
        ({"MATMUL_DTYPE": "fp8"}, "Unknown matmul_dtype 'fp8'"),
        ({"XLA": "yes"}, "--config.ubm.xla=yes"),
        ({"UBM_BATCH_SIZE": "0"}, "batch_size must be at least 1"),
        ({"EXTRACT_BATCH_SIZE": "64x"}, "--config.likelihoods.batch_size=64x"),
        ({"FRAMES": "-1"}, "frames_per_video and max_frames must be >= 0"),
        ({"FACE_FINDER": "slow"}, "got 'slow'"),
        ({"OVERRIDES": "--config.ubm.nr_filterz=8"}, "config.ubm.nr_filterz"),
    ],
)
def test_bad_config_values_are_refused_by_the_first_stage(tmp_path, env, message):
    """The shortcuts become dotted overrides, checked once, by the binaries."""
    result = _reproduce(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "work").exists()  # refused before writing anything


def test_make_passes_the_device_variables_to_the_stages():
    """`make reproduce` hands each variable to reproduce.sh, which maps it to flags."""
    shown = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            "reproduce",
            "STRATEGY=mirrored",
            "PRECISION=mixed_bfloat16",
            "MATMUL_DTYPE=bfloat16",
            "XLA=1",
            "UBM_BATCH_SIZE=64",
            "EXTRACT_BATCH_SIZE=512",
            "ALLOW_CPU=1",
            "FACE_FINDER=exact",
            "FRAMES=32",
            "DATASET=crops",
            "DATASET_ROOT=/data/crops",
            "OVERRIDES=--config.ubm.max_steps=50",
            "VENV=.venv",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for setting in (
        'STRATEGY="mirrored"',
        'PRECISION="mixed_bfloat16"',
        'MATMUL_DTYPE="bfloat16"',
        'XLA="1"',
        'UBM_BATCH_SIZE="64"',
        'EXTRACT_BATCH_SIZE="512"',
        'ALLOW_CPU="1"',
        'FACE_FINDER="exact"',
        'FRAMES="32"',
        'DATASET="crops"',
        'DATASET_ROOT="/data/crops"',
        'OVERRIDES="--config.ubm.max_steps=50"',
    ):
        assert setting in shown.stdout


def test_stages_get_the_config_overrides_and_device_flags(tmp_path):
    """A stand-in interpreter records each stage's arguments: the variables become dotted
    overrides (the same for every stage) and the two device flags."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    _reproduce(
        tmp_path,
        PYTHON=str(fake),
        STRATEGY="mirrored",
        PRECISION="mixed_bfloat16",
        MATMUL_DTYPE="bfloat16",
        XLA="0",
        UBM_BATCH_SIZE="64",
        EXTRACT_BATCH_SIZE="512",
        ALLOW_CPU="1",
        FACE_FINDER="exact",
        FRAMES="32",
        OVERRIDES="--config.ubm.max_steps=50 --config.detector.epochs=3",
    )
    calls: dict[str, list[list[str]]] = {}
    for line in log.read_text().splitlines():
        calls.setdefault(line.split()[1], []).append(line.split()[2:])
    overrides = [
        f"--config.{section}.{field}={value}"
        for section in ("ubm", "background", "likelihoods")
        for field, value in (("mixed_precision", "mixed_bfloat16"), ("matmul_dtype", "bfloat16"))
    ]
    overrides += [
        f"--config.{section}.{field}={value}"
        for section in ("ubm", "background")
        for field, value in (("xla", "0"), ("batch_size", "64"))
    ]
    overrides += [
        "--config.likelihoods.batch_size=512",
        "--config.faces.frames_per_video=32",
        "--config.faces.face_finder=exact",
        "--config.ubm.max_steps=50",
        "--config.detector.epochs=3",
    ]
    for stage in ("make_synthetic_ffpp", "prepare_faces", "train_ubm", "run_detection"):
        for args in calls[f"experiments.{stage}"]:
            assert args[2 : 2 + len(overrides)] == overrides, stage
    ubm_flags = ["--strategy=mirrored", "--allow_cpu"]
    # The UBM, then the background model with the same device flags.
    assert [c[2 + len(overrides) :] for c in calls["experiments.train_ubm"]] == [
        ubm_flags,
        ["--background"] + ubm_flags,
    ]
    assert [c[2 + len(overrides) :] for c in calls["experiments.extract_likelihoods"]] == [
        ["--allow_cpu"],
        ["--background", "--allow_cpu"],
    ]
    _reproduce(tmp_path, PYTHON=str(fake), WORKDIR=str(tmp_path / "defaults"))
    last = log.read_text().splitlines()
    ubm = [line for line in last if "experiments.train_ubm" in line][-2]
    assert ubm.split()[2:] == ["--config=smoke", f"--workdir={tmp_path / 'defaults'}"]


def test_other_datasets_skip_the_generated_steps_and_detect_test_crops(tmp_path):
    """DATASET=crops: no generated dataset, no cross-dataset evaluation; detect runs on
    test videos of both labels listed in the face manifest."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    # The stand-in runs the manifest sampler for real (python -c), records the rest.
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = -c ]; then exec {sys.executable} "$@"; fi\necho "$*" >> {log}\n'
    )
    fake.chmod(0o755)
    work = tmp_path / "work"
    (work / "faces").mkdir(parents=True)
    videos = [
        {"video": "r1", "method": "original", "split": "test", "path": "/d/r1.png"},
        {"video": "r2", "method": "original", "split": "train", "path": "/d/r2.png"},
        {"video": "f1", "method": "fake", "split": "test", "path": "/d/f1.png"},
        {"video": "r3", "method": "original", "split": "test", "path": "/d/r3.png"},
    ]
    for video in videos:
        video.update(status="ok", faces=1)
    (work / "faces" / "manifest.json").write_text(json.dumps({"videos": videos}))
    (work / "results").mkdir()
    for table in ("table1.md", "table2.md"):  # what make_tables would write
        (work / "results" / table).write_text("|table|\n")
    result = _reproduce(tmp_path, PYTHON=str(fake), DATASET="crops", DATASET_ROOT=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    stages = [line.split()[1] for line in log.read_text().splitlines()]
    assert "experiments.make_synthetic_ffpp" not in stages
    assert "experiments.evaluate" not in stages and "experiments.make_cross_table" not in stages
    faces = next(line for line in log.read_text().splitlines() if "prepare_faces" in line)
    assert f"--dataset=crops --dataset_root={tmp_path}" in faces
    detect = next(line for line in log.read_text().splitlines() if "experiments.detect" in line)
    assert detect.split()[-3:] == ["--input=/d/r1.png", "--input=/d/f1.png", "--input=/d/r3.png"]
