"""`--strategy=multiworker` as a real two-worker cluster on loopback ports, on the CPU.

Each worker is a subprocess with its own `TF_CONFIG` (two `127.0.0.1:<free port>`
workers) running the stage `experiments.pipeline.ubm.train_ubm` with the
MultiWorkerMirroredStrategy, as `python -m experiments.train_ubm --strategy=multiworker`
does, on tiny generated face shards (R=1, F=8, M=2, 16x16 crops, 6 steps, no dropout).
Checked: (a) the weights after 6 steps equal one worker's with the same global batch,
(b) only the chief writes the UBM folder, (c) after worker 1 is SIGKILLed mid-run, a
restart of the whole cluster resumes from the chief's last checkpoint and ends with
the weights of the uninterrupted cluster run. All runs happen in one subprocess started
as soon as the tests are collected (`start_in_background`, conftest.py), beside the
tests before these.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import start_python_in_background, started_in_background, stop_process_group

from data_prep import face_records
from data_prep.files import write_shard_atomically
from experiments.pipeline import ubm
from pixelcnn_pp import run_folder
from pixelcnn_pp.config import UBMConfig

# Three two-worker cluster runs: minutes of CPU, so `make test-cluster` runs them apart
# from `make test` (CI runs both).
pytestmark = pytest.mark.cluster

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16
STEPS = 6
CONFIG = UBMConfig(
    nr_resnet=1,
    nr_filters=8,
    nr_logistic_mix=2,
    # No dropout: its random masks are drawn per replica, so one worker and two would
    # differ by more than float reduction order.
    dropout_rate=0.0,
    learning_rate=5e-3,
    lr_decay=0.99,
    ema_decay=0.9,
    batch_size=8,
    init_batch_size=8,
    epochs=100.0,
    max_steps=STEPS,
    eval_every_steps=100,
    checkpoint_every_steps=2,
    eval_batches=1,
    image_size=SIZE,
)
TIMEOUT_S = 400  # per cluster run; a loaded 2-core CPU needs minutes for graph building

# One worker: the stage with the multiworker strategy. With a delay argument > 0 every
# step waits that long first (the test's window for killing a worker mid-run).
_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from absl import logging
    from experiments.pipeline import ubm
    from pixelcnn_pp import training
    from pixelcnn_pp.config import UBMConfig

    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    train, out_dir, values, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if delay > 0:
        make_step = training.make_train_step

        def slow_step(*args, **kwargs):
            step = make_step(*args, **kwargs)

            def delayed(iterator):
                time.sleep(delay)
                return step(iterator)

            return delayed

        training.make_train_step = slow_step
    metrics = ubm.train_ubm(
        UBMConfig(**json.loads(values)), train, None, out_dir, strategy_name="multiworker",
        log_every_steps=1,
    )
    print("RESULT " + json.dumps(metrics), flush=True)
    """
)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _write_shard(path: str, seed: int, count: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    examples = []
    for i in range(count):
        a = rng.uniform(-1.0, 1.0, (3, 3))
        image = np.stack(
            [
                128 + 100 * np.sin(2 * np.pi * (a[c, 0] * xx + a[c, 1] * yy) + a[c, 2])
                for c in range(3)
            ],
            -1,
        ) + rng.normal(0.0, 3.0, (SIZE, SIZE, 3))
        examples.append(
            face_records.FaceExample(
                image=np.clip(image, 0, 255).astype(np.uint8),
                video=f"{seed}{i:03d}",
                frame=i,
                method=face_records.ORIGINAL,
                label=0,
                split="train",
                compression="raw",
                box=(0, 0, SIZE, SIZE),
            )
        )
    write_shard_atomically(path, (face_records.serialize_face(e) for e in examples))


class Cluster:
    """Two worker subprocesses of one cluster (worker 0 is the chief)."""

    def __init__(self, train: str, out_dirs: list[str], tmp_dirs: list[str], delay: float = 0.0):
        ports = _free_ports(2)
        workers = [f"127.0.0.1:{port}" for port in ports]
        self.processes = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps(tf_config),
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": "-1",
                "TMPDIR": tmp_dirs[index],
            }
            args = [train, out_dirs[index], json.dumps(dataclasses.asdict(CONFIG)), str(delay)]
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, *args],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )

    def wait(self) -> list[dict]:
        """Waits for both workers; returns their metrics (failing with their logs)."""
        results = []
        for index, process in enumerate(self.processes):
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
            assert process.returncode == 0, f"worker {index}:\n{stderr[-4000:]}"
            line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
            results.append({**json.loads(line[len("RESULT ") :]), "log": stderr})
        return results

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


def _latest_step(out_dir: str) -> int:
    latest = run_folder.find_latest_checkpoint(out_dir)
    return run_folder.checkpoint_step(latest) if latest else 0


def _weights(checkpoint: str) -> dict[str, list[np.ndarray]]:
    """Model and EMA weights of one checkpoint, each in model order."""
    reader = tf.train.load_checkpoint(checkpoint)
    prefix = "model/trainable/"
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith(prefix)]
    names.sort(key=lambda n: int(n[len(prefix) :].split("/")[0]))
    return {
        "model": [reader.get_tensor(n) for n in names],
        "ema": run_folder.checkpoint_ema_weights(checkpoint),
    }


def run_clusters(root_dir: str) -> dict:
    """The runs the tests check, in `root_dir`; returns what they check (as JSON)."""
    root = pathlib.Path(root_dir)
    faces = root / "faces"
    faces.mkdir()
    for k in range(2):
        _write_shard(str(faces / f"train-{k}.tfrecord"), seed=k, count=16)
    train = str(faces / "train-*.tfrecord")
    tmp = [str(root / f"tmp{i}") for i in range(2)]
    for folder in tmp:
        os.mkdir(folder)

    # (a), (b): an uninterrupted cluster run; worker 1 is given a folder of its own, which
    # must stay empty. Meanwhile one worker of the default strategy trains in this process.
    plain, own = str(root / "plain" / "ubm"), str(root / "worker1" / "ubm")
    cluster = Cluster(train, [plain, own], tmp)
    try:
        single = ubm.train_ubm(CONFIG, train, None, str(root / "single" / "ubm"), log_every_steps=1)
        uninterrupted = cluster.wait()
    finally:
        cluster.kill()
    worker1_files = [os.path.join(d, f) for d, _, fs in os.walk(root / "worker1") for f in fs]
    # (TMPDIR also holds autograph's generated sources; the scratch run folder is ours.)
    worker1_scratch = [n for n in os.listdir(tmp[1]) if n.startswith("ubm_worker_")]

    # (c): kill worker 1 once the chief has saved a checkpoint, then restart both.
    killed_dir = str(root / "killed" / "ubm")
    cluster = Cluster(train, [killed_dir, killed_dir], tmp, delay=1.0)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while _latest_step(killed_dir) == 0 and cluster.processes[0].poll() is None:
            assert time.monotonic() < deadline, "the chief saved no checkpoint in time"
            time.sleep(0.05)
        cluster.processes[1].send_signal(signal.SIGKILL)
        killed_at = _latest_step(killed_dir)
        # The chief's next collective has no peer: it fails (or hangs; MWMS's health
        # check is off by default), so the whole cluster is restarted.
        try:
            chief_exit = cluster.processes[0].wait(timeout=5)
        except subprocess.TimeoutExpired:
            chief_exit = None
            cluster.processes[0].kill()
    finally:
        cluster.kill()
    before_restart = _latest_step(killed_dir)
    cluster = Cluster(train, [killed_dir, killed_dir], tmp)
    try:
        restarted = cluster.wait()
    finally:
        cluster.kill()
    return {
        "single": single,
        "uninterrupted": uninterrupted,
        "plain": plain,
        "worker1_files": worker1_files,
        "worker1_scratch": worker1_scratch,
        "chief_exit": chief_exit,
        "killed_at": killed_at,
        "before_restart": before_restart,
        "restarted": restarted,
        "killed_dir": killed_dir,
    }


# Runs `run_clusters` in a process of its own (argv: this folder, the root folder) and
# prints its result on a RUNS line.
_RUNS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import test_multiworker
    print("RUNS " + json.dumps(test_multiworker.run_clusters(sys.argv[2])), flush=True)
    """
)


def start_in_background(tmp_path_factory) -> tuple[str, subprocess.Popen]:
    """Starts `run_clusters` in a subprocess; called by conftest.py as soon as tests of
    this module are collected, so that the cluster runs go on beside the tests before
    these. Returns the root folder and the process."""
    root = str(tmp_path_factory.mktemp("multiworker"))
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    return root, start_python_in_background(_RUNS, tests_dir, root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    _, process = started_in_background(__name__) or start_in_background(tmp_path_factory)
    try:
        stdout, stderr = process.communicate(timeout=4 * TIMEOUT_S)
    finally:
        stop_process_group(process)
    assert process.returncode == 0, stderr[-6000:]
    line = [ln for ln in stdout.splitlines() if ln.startswith("RUNS ")][-1]
    return json.loads(line[len("RUNS ") :])


@pytest.mark.slow
def test_two_workers_match_one_worker_with_the_same_global_batch(runs):
    chief, worker1 = runs["uninterrupted"]
    assert chief["step"] == worker1["step"] == runs["single"]["step"] == STEPS
    with open(run_folder.config_path(runs["plain"])) as handle:
        saved = json.load(handle)
    assert saved["strategy"] == "multiworker" and saved["num_replicas"] == 2
    # Both workers reduce the same global loss.
    assert chief["train_bits_per_dim"] == pytest.approx(worker1["train_bits_per_dim"], rel=1e-6)
    assert chief["train_bits_per_dim"] == pytest.approx(
        runs["single"]["train_bits_per_dim"], rel=1e-3
    )
    got = _weights(chief["checkpoint"])
    want = _weights(runs["single"]["checkpoint"])
    for name in ("model", "ema"):
        assert len(got[name]) == len(want[name]) > 0
        for a, b in zip(got[name], want[name], strict=True):
            # Two half-batch gradients all-reduced round differently from one full-batch
            # gradient (about 1e-7 relative). Adam divides by sqrt(v), which for weights
            # with near-zero gradients amplifies that rounding up to a fraction of a step
            # (lr); the rest agree to float noise. Measured on a 2-core CPU: max 7e-5
            # (0.014 lr), mean 8e-7 (1.6e-4 lr); a small array (8 biases) with one
            # amplified weight reached a mean of 5.7e-6 (1.1e-3 lr), hence 1e-2 lr.
            diff = np.abs(a - b)
            assert diff.max() <= CONFIG.learning_rate, name
            assert diff.mean() <= 1e-2 * CONFIG.learning_rate, (name, diff.mean())


@pytest.mark.slow
def test_only_the_chief_writes_the_ubm_folder(runs):
    chief, worker1 = runs["uninterrupted"]
    plain = runs["plain"]
    for name in (run_folder.CONFIG_FILE, run_folder.METRICS_FILE, run_folder.TENSORBOARD_DIR):
        assert os.path.exists(os.path.join(plain, name)), name
    assert chief["checkpoint"] == os.path.join(run_folder.checkpoint_dir(plain), f"ckpt-{STEPS}")
    # Worker 1 wrote nothing in its own UBM folder, and its scratch checkpoints are gone.
    assert runs["worker1_files"] == []
    assert runs["worker1_scratch"] == []


@pytest.mark.slow
def test_cluster_restart_after_a_killed_worker_resumes_from_the_chief_checkpoint(runs):
    assert 0 < runs["killed_at"] <= runs["before_restart"] < STEPS
    # The chief could not finish without worker 1 (None: it hung and was killed).
    assert runs["chief_exit"] != 0
    chief, worker1 = runs["restarted"]
    resumed = f"at step {runs['before_restart']}"
    assert "Resumed from" in chief["log"] and resumed in chief["log"]
    assert "Resumed from" in worker1["log"] and resumed in worker1["log"]
    assert chief["step"] == worker1["step"] == STEPS
    got = _weights(chief["checkpoint"])
    want = _weights(runs["uninterrupted"][0]["checkpoint"])
    for name in ("model", "ema"):
        for a, b in zip(got[name], want[name], strict=True):
            # The same cluster, the same reduction order: equal (bit for bit when measured).
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
