"""`make reproduce`'s script refuses bad settings with a clear message, before any work."""

from __future__ import annotations

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
        ({"PRECISION": "fp8"}, "PRECISION must be float32, mixed_bfloat16 or mixed_float16"),
        ({"MATMUL_DTYPE": "fp8"}, "MATMUL_DTYPE must be float32 or bfloat16"),
        ({"XLA": "yes"}, "XLA must be 1 or 0"),
        ({"UBM_BATCH_SIZE": "0"}, "UBM_BATCH_SIZE must be a positive whole number"),
        ({"EXTRACT_BATCH_SIZE": "64x"}, "EXTRACT_BATCH_SIZE must be a positive whole number"),
        ({"ALLOW_CPU": "yes"}, "ALLOW_CPU must be 1 or 0"),
        ({"DETECTION": "slow"}, "DETECTION must be fast or exact"),
    ],
)
def test_bad_settings_are_refused(tmp_path, env, message):
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    result = _reproduce(tmp_path, **env)
    assert result.returncode == 2
    assert message in result.stderr
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
            "DETECTION=exact",
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
        'DETECTION="exact"',
    ):
        assert setting in shown.stdout


def test_stages_get_the_device_flags(tmp_path):
    """A stand-in interpreter records each stage's arguments: the variables become flags."""
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
        DETECTION="exact",
    )
    calls: dict[str, list[list[str]]] = {}
    for line in log.read_text().splitlines():
        calls.setdefault(line.split()[1], []).append(line.split()[2:])
    ubm_flags = ["--strategy=mirrored", "--mixed_precision=mixed_bfloat16"]
    ubm_flags += ["--matmul_dtype=bfloat16", "--noxla"]
    ubm_flags += ["--batch_size=64", "--allow_cpu"]
    # The UBM, then the background model with the same device flags.
    assert [c[2:] for c in calls["experiments.train_ubm"]] == [
        ubm_flags,
        ["--background"] + ubm_flags,
    ]
    assert calls["experiments.prepare_faces"][0][-1] == "--detection=exact"
    extract_flags = ["--mixed_precision=mixed_bfloat16", "--matmul_dtype=bfloat16"]
    extract_flags += ["--batch_size=512", "--allow_cpu"]
    assert [c[2:] for c in calls["experiments.extract_likelihoods"]] == [
        extract_flags,
        ["--background"] + extract_flags,
    ]
    _reproduce(tmp_path, PYTHON=str(fake), WORKDIR=str(tmp_path / "defaults"))
    last = log.read_text().splitlines()
    ubm = [line for line in last if "experiments.train_ubm" in line][-2]
    assert ubm.split()[2:] == ["--config=smoke", f"--workdir={tmp_path / 'defaults'}"]
