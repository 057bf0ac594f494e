"""The face stage's worker pool: a worker killed mid-video ends neither the run nor hangs it.

The jobs' `work` functions live here, at module level, so that spawned workers import
them; this module imports no TensorFlow, so that they start quickly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
import signal

import pytest

from data_prep import face_stage
from data_prep.face_settings import FaceSettings
from data_prep.face_workers import CropJob, CropResult, death_reason, map_jobs, run_job

# Seconds a run may take before the test fails as hung.
DEADLINE_S = 120


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fails the test (instead of blocking it) if the body runs longer than `seconds`."""

    def hung(*_):
        raise TimeoutError(f"the run did not end within {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _attempt(job: CropJob) -> int:
    """Records that a worker started `job` (one file per worker pid); the attempts so far."""
    pathlib.Path(f"{job.path}.attempt.{os.getpid()}").touch()
    return len(list(pathlib.Path(job.path).parent.glob(pathlib.Path(job.path).name + ".attempt.*")))


def _kill_on(job: CropJob, settings, detector, marker: str = "die", times: int = 99) -> CropResult:
    """Test-only work: a job whose name holds `marker` SIGKILLs its worker, `times` times."""
    if marker in os.path.basename(job.path) and _attempt(job) <= times:
        os.kill(os.getpid(), signal.SIGKILL)
    return CropResult(job.key, None, None, 0.001)


def _dies_always(job, settings, detector) -> CropResult:
    return _kill_on(job, settings, detector)


def _dies_once(job, settings, detector) -> CropResult:
    return _kill_on(job, settings, detector, times=1)


def _dies_on_real_video(job, settings, detector) -> CropResult:
    """Kills its worker on the original video 000, crops every other video for real."""
    if job.key == "original/000":
        os.kill(os.getpid(), signal.SIGKILL)
    return run_job(job, settings, detector)


def _jobs(tmp_path: pathlib.Path, names: list[str]) -> list[CropJob]:
    return [CropJob(key=name, path=str(tmp_path / name)) for name in names]


def test_death_reason_names_the_signal():
    assert death_reason(-9) == "signal 9, SIGKILL"
    assert death_reason(3) == "exit code 3"


@pytest.mark.slow
def test_a_video_that_kills_its_worker_twice_fails_and_the_rest_completes(tmp_path):
    names = ["a", "b", "die", "c", "d", "e"]
    with _deadline(DEADLINE_S):
        results = {
            r.key: r for r in map_jobs(_jobs(tmp_path, names), FaceSettings(), 2, _dies_always)
        }
    assert sorted(results) == sorted(names)  # one result each, the run ended by itself
    assert all(results[n].error is None for n in names if n != "die")
    error = results["die"].error
    assert error and "worker process died (signal 9, SIGKILL) while processing this video" in error
    # Retried once, in a fresh worker (another pid), then given up.
    assert len(list(tmp_path.glob("die.attempt.*"))) == 2


@pytest.mark.slow
def test_a_video_that_kills_its_worker_once_succeeds_on_the_retry(tmp_path):
    names = ["a", "die", "b", "c"]
    with _deadline(DEADLINE_S):
        results = {
            r.key: r for r in map_jobs(_jobs(tmp_path, names), FaceSettings(), 2, _dies_once)
        }
    assert sorted(results) == sorted(names)
    assert all(r.error is None for r in results.values())
    assert len(list(tmp_path.glob("die.attempt.*"))) == 2


@pytest.mark.slow
def test_the_stage_records_the_killed_video_as_failed_and_finishes_the_others(
    tmp_path, monkeypatch
):
    from data_prep.datasets import GeneratedDataset
    from data_prep.face_journal import PROGRESS
    from data_prep.synthetic import generate_synthetic_ffpp

    root = str(tmp_path / "ffpp")
    generate_synthetic_ffpp(root, identities=6, frames=3, seed=2)
    monkeypatch.setattr(
        face_stage, "map_jobs", functools.partial(map_jobs, work=_dies_on_real_video)
    )
    out = str(tmp_path / "faces")
    with _deadline(DEADLINE_S):
        manifest = face_stage.prepare_faces(
            GeneratedDataset(root), out, FaceSettings(methods=("Deepfakes",)), workers=2
        )
    entries = {(e["method"], e["video"]): e for e in manifest["videos"]}
    failed = entries.pop(("original", "000"))
    assert failed["status"] == "failed" and failed["shard"] is None
    assert "worker process died (signal 9, SIGKILL)" in failed["error"]
    assert len(entries) == 11 and all(e["status"] == "ok" for e in entries.values())
    assert manifest["complete"] and manifest["failed_videos"] == 1
    with open(os.path.join(out, PROGRESS)) as f:
        journal = [json.loads(line) for line in f]
    assert len(journal) == 12  # every result journaled, the failure too
