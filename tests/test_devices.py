"""Devices: quiet TensorFlow logs, one device line, the CPU guard, GPU install refusals."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

from experiments.configs import load_config
from experiments.pipeline import devices

PAPER = load_config("paper")


def _binary(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_log_level_default_is_set_only_when_the_user_has_not(monkeypatch):
    monkeypatch.setattr(devices, "nvidia_driver_present", lambda: False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert devices.quiet_tensorflow_logs() == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert devices.quiet_tensorflow_logs() == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    monkeypatch.setattr(devices, "nvidia_driver_present", lambda: True)
    assert devices.quiet_tensorflow_logs() == "2"  # CUDA errors stay visible on GPU machines


def test_nvidia_driver_detection(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert not devices.nvidia_driver_present(str(tmp_path / "missing"))
    assert devices.nvidia_driver_present(str(tmp_path))  # the driver's /proc folder
    failing = tmp_path / "nvidia-smi"
    failing.write_text("#!/bin/sh\nexit 9\n")
    failing.chmod(0o755)
    assert not devices.nvidia_driver_present(str(tmp_path / "missing"))


def test_devices_are_logged_once_per_stage(monkeypatch):
    monkeypatch.setattr(devices, "device_summary", lambda: "no GPU: running on 2 CPU cores")
    monkeypatch.setattr(devices, "_logged_stages", set())
    lines = []
    monkeypatch.setattr(devices.logging, "info", lambda fmt, *a: lines.append(fmt % a))
    for _ in range(3):
        devices.log_devices("train_ubm")
    assert lines == ["train_ubm runs on no GPU: running on 2 CPU cores."]


def _guard(config, allow_cpu=False, smoke=False, gpus=False, rate=40e9, images=7200 * 16):
    calls = {"images": 0, "measure": 0}

    def count() -> int:
        calls["images"] += 1
        return images

    def measure(_config) -> float:
        calls["measure"] += 1
        return rate

    devices.require_gpu_or_allow(
        config,
        allow_cpu,
        smoke=smoke,
        stage="train_ubm",
        images=count,
        training=True,
        gpus_present=lambda: gpus,
        measure=measure,
    )
    return calls


@pytest.mark.slow  # the FLOP count imports TensorFlow
def test_paper_ubm_without_gpu_stops_with_the_duration_and_the_install_command():
    with pytest.raises(devices.CPUTooSlowError) as raised:
        _guard(PAPER.ubm)
    message = str(raised.value)
    # 7,200 steps x 16 images x 3 x forward FLOPs at 40 GFLOP/s.
    expected = devices.run_flops(PAPER.ubm, 7200 * 16, training=True) / 40e9
    assert devices.describe_duration(expected) in message
    assert "days on this CPU" in message
    assert "make install GPU=1" in message and "--allow_cpu" in message


def test_guard_lets_smoke_gpu_and_allowed_runs_through_without_measuring():
    smoke = load_config("smoke")
    assert _guard(smoke.ubm, smoke=True) == {"images": 0, "measure": 0}
    assert _guard(PAPER.ubm, gpus=True) == {"images": 0, "measure": 0}
    assert _guard(PAPER.ubm, allow_cpu=True) == {"images": 0, "measure": 0}


@pytest.mark.slow
def test_extraction_duration_counts_one_forward_pass_per_crop():
    config = PAPER.ubm
    assert devices.run_flops(config, 10, training=False) * 3 == devices.run_flops(
        config, 10, training=True
    )
    with pytest.raises(devices.CPUTooSlowError, match="160000 face crops"):
        devices.require_gpu_or_allow(
            config,
            False,
            smoke=False,
            stage="extract_likelihoods",
            images=lambda: 160_000,
            training=False,
            gpus_present=lambda: False,
            measure=lambda _c: 40e9,
        )


def test_durations_read_naturally():
    assert devices.describe_duration(41 * 86400) == "about 41 days"
    assert devices.describe_duration(5 * 3600) == "about 5.0 hours"
    assert devices.describe_duration(30) == "about a minute"
    assert devices.describe_duration(12 * 60) == "about 12 minutes"


@pytest.mark.parametrize(
    ("binary", "flag", "message"),
    [
        ("train_ubm", "--strategy=ring", "--strategy='ring' is unknown"),
        ("train_ubm", "--config.ubm.mixed_precision=fp8", "Unknown mixed_precision 'fp8'"),
        (
            "extract_likelihoods",
            "--config.likelihoods.mixed_precision=fp8",
            "likelihoods.mixed_precision='fp8' is unknown",
        ),
    ],
)
def test_binaries_refuse_unknown_strategy_and_precision_before_any_work(
    tmp_path, binary, flag, message
):
    work = tmp_path / "work"
    result = _binary(binary, "--config=smoke", f"--workdir={work}", flag)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not work.exists()


@pytest.mark.slow
def test_global_batch_not_divisible_by_replicas_is_refused():
    from pixelcnn_pp import training

    @dataclasses.dataclass
    class ThreeReplicas:
        num_replicas_in_sync: int = 3

    assert training.check_global_batch(48, ThreeReplicas(), "mirrored") == 3
    with pytest.raises(ValueError, match="16 must be divisible by the 3 replicas"):
        training.check_global_batch(16, ThreeReplicas(), "mirrored")


@pytest.mark.slow
def test_cpu_only_binary_says_so_once_without_cuda_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.extract_likelihoods",
            "--config=smoke",
            f"--workdir={tmp_path}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if devices.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    assert result.stderr.count("extract_likelihoods runs on no GPU: running on") == 1
    assert "cuInit" not in result.stderr
    assert "run prepare_faces first" in result.stderr  # and it then stops: no faces


def _make_install(tmp_path, gpu: str) -> subprocess.CompletedProcess:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    failing = fake_bin / "nvidia-smi"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    failing.chmod(0o755)
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "install",
            f"GPU={gpu}",
            f"VENV={tmp_path / 'venv'}",
            f"NVIDIA_PROC={tmp_path / 'no-driver'}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"},
    )


@pytest.mark.parametrize(
    ("gpu", "message"),
    [("1", "no NVIDIA driver on this machine"), ("yes", "GPU must be 1 (or empty)")],
)
def test_gpu_install_without_a_driver_stops_before_installing(tmp_path, gpu, message):
    result = _make_install(tmp_path, gpu)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "venv").exists()  # nothing created, nothing installed
