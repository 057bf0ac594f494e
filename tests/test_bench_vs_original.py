"""The side-by-side comparison with the original code: ratios, medians, bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pixelcnn_pp import benchmark
from tests.conftest import PROJECT_ROOT


def _result(train: float, likelihood: float) -> dict:
    return {"train_images_per_sec": train, "likelihood_images_per_sec": likelihood}


def test_ratios_and_their_median_over_runs():
    runs = [
        benchmark.compare_with_original(
            _result(10.0, 40.0), {"float32": _result(t, 48.0), "bfloat16": _result(2 * t, 100.0)}
        )
        for t in (13.0, 15.0, 14.0)
    ]
    assert runs[0]["ratio"]["float32"] == {
        "train_images_per_sec": 1.3,
        "likelihood_images_per_sec": 1.2,
    }
    assert benchmark.median_ratios(runs) == {
        "float32": {"train_images_per_sec": 1.4, "likelihood_images_per_sec": 1.2},
        "bfloat16": {"train_images_per_sec": 2.8, "likelihood_images_per_sec": 2.5},
    }
    with pytest.raises(ValueError, match="lacks likelihood_images_per_sec"):
        benchmark.compare_with_original({"train_images_per_sec": 1.0}, {})
    with pytest.raises(ValueError, match="No runs"):
        benchmark.median_ratios([])


def _binary(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.bench_vs_original", *flags],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_failing_original_script_or_a_bad_dtype_is_a_clear_usage_error(tmp_path):
    broken = tmp_path / "ref.py"
    broken.write_text(
        "import sys\nprint('no module named tensorflow.compat', file=sys.stderr)\nsys.exit(1)\n"
    )
    done = _binary(f"--original={broken}", "--runs=1")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "printed no result (exit 1)" in done.stderr and "tensorflow.compat" in done.stderr
    done = _binary(f"--original={broken}", "--matmul_dtypes=float32,fp8")
    assert done.returncode == 1 and "unknown 'fp8'" in done.stderr
