"""UBM training: learning, checkpoints, exact resume, NaN guard, strategies, likelihood maps.

A tiny PixelCNN++ (R=1, F=8, M=2) on 16x16 smooth generated images stored as real
face-crop TFRecords keeps every run to seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import communicate_all

from data_prep import face_images, face_records
from data_prep.files import write_shard_atomically
from experiments.pipeline import ubm
from pixelcnn_pp import ema as polyak
from pixelcnn_pp import likelihood, run_folder, strategies, training
from pixelcnn_pp.config import UBMConfig
from pixelcnn_pp.distributions import pixel_log_likelihood
from pixelcnn_pp.model import images_to_model_input

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16
CONFIG = UBMConfig(
    nr_resnet=1,
    nr_filters=8,
    nr_logistic_mix=2,
    dropout_rate=0.5,
    learning_rate=5e-3,
    lr_decay=0.99,
    ema_decay=0.9,
    batch_size=8,
    init_batch_size=8,
    epochs=100.0,
    max_steps=8,
    eval_every_steps=100,
    checkpoint_every_steps=2,
    eval_batches=1,
    image_size=SIZE,
)


def smooth_images(count: int, seed: int, size: int = SIZE) -> np.ndarray:
    """Random smooth colour gradients/waves with a little noise: uint8 [N, S, S, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        a = rng.uniform(-1.0, 1.0, (3, 3))
        channels = [
            128 + 100 * np.sin(2 * np.pi * (a[c, 0] * xx + a[c, 1] * yy) + 3 * a[c, 2])
            for c in range(3)
        ]
        noisy = np.stack(channels, -1) + rng.normal(0.0, 3.0, (size, size, 3))
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(images)


def write_faces(path: str, images: np.ndarray) -> None:
    examples = (
        face_records.FaceExample(
            image=image,
            video=f"{i:03d}",
            frame=i,
            method=face_records.ORIGINAL,
            label=0,
            split="train",
            compression="raw",
            box=(0, 0, image.shape[0], image.shape[1]),
        )
        for i, image in enumerate(images)
    )
    write_shard_atomically(path, (face_records.serialize_face(e) for e in examples))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("faces")
    write_faces(str(folder / "train-0.tfrecord"), smooth_images(32, seed=0))
    write_faces(str(folder / "train-1.tfrecord"), smooth_images(32, seed=1))
    write_faces(str(folder / "val-0.tfrecord"), smooth_images(8, seed=2))
    return {
        "train": str(folder / "train-*.tfrecord"),
        "val": str(folder / "val-*.tfrecord"),
        "folder": str(folder),
    }


def _scalars(out_dir: str, tag: str) -> dict[int, float]:
    values = {}
    for path in glob.glob(os.path.join(out_dir, run_folder.TENSORBOARD_DIR, "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from experiments.pipeline import ubm
    from pixelcnn_pp.config import UBMConfig
    config = UBMConfig(**json.loads(sys.argv[3]))
    metrics = ubm.train_ubm(config, sys.argv[1], None, sys.argv[2], strategy_name="mirrored",
                                 log_every_steps=1)
    print("RESULT " + json.dumps(metrics))
    """
)


MIRRORED_CONFIG = dataclasses.replace(CONFIG, dropout_rate=0.0, max_steps=1)


@pytest.fixture(scope="module")
def mirrored_run(data, tmp_path_factory):
    """One step of the mirrored strategy on two logical CPU devices, in a subprocess
    (logical devices must be set before TensorFlow starts). Started before the
    in-process training so that both use the two cores at once."""
    out_dir = str(tmp_path_factory.mktemp("mirrored") / "ubm")
    process = subprocess.Popen(
        [sys.executable, "-c", _MIRRORED_SCRIPT, data["train"], out_dir]
        + [json.dumps(dataclasses.asdict(MIRRORED_CONFIG))],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    yield {"process": process, "out_dir": out_dir}
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def trained(data, mirrored_run, tmp_path_factory) -> dict:
    """Trains 8 steps, then loses the step-8 checkpoint (a kill after step 6's save)
    and runs the same call again, which must redo steps 7-8 identically."""
    out_dir = str(tmp_path_factory.mktemp("run") / "ubm")
    first = ubm.train_ubm(CONFIG, data["train"], data["val"], out_dir, log_every_steps=2)
    ckpt_dir = os.path.join(out_dir, run_folder.CHECKPOINT_DIR)
    uninterrupted = run_folder.checkpoint_ema_weights(os.path.join(ckpt_dir, "ckpt-8"))
    reader = tf.train.load_checkpoint(os.path.join(ckpt_dir, "ckpt-8"))
    uninterrupted_step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    ema_at_6 = run_folder.checkpoint_ema_weights(os.path.join(ckpt_dir, "ckpt-6"))
    bpd_first_run = _scalars(out_dir, "train/bits_per_dim")
    # Simulate a kill between the step-6 and step-8 saves.
    for path in glob.glob(os.path.join(ckpt_dir, "ckpt-8.*")):
        os.remove(path)
    os.remove(os.path.join(out_dir, run_folder.METRICS_FILE))
    with open(os.path.join(ckpt_dir, "checkpoint"), "w") as handle:
        handle.write('model_checkpoint_path: "ckpt-6"\nall_model_checkpoint_paths: "ckpt-6"\n')
    resumed = ubm.train_ubm(CONFIG, data["train"], data["val"], out_dir, log_every_steps=2)
    return {
        "out_dir": out_dir,
        "first": first,
        "resumed": resumed,
        "uninterrupted": uninterrupted,
        "uninterrupted_step": uninterrupted_step,
        "ema_at_6": ema_at_6,
        "bpd_first_run": bpd_first_run,
    }


@pytest.mark.slow
def test_training_lowers_bits_per_dim_and_writes_outputs(trained):
    out_dir, first = trained["out_dir"], trained["first"]
    bpd = trained["bpd_first_run"]
    assert sorted(bpd) == [2, 4, 6, 8]
    assert bpd[8] < bpd[2] - 0.1, bpd
    assert first["step"] == 8 and np.isfinite(first["val_bits_per_dim"])
    assert first["learning_rate"] == pytest.approx(CONFIG.learning_rate * CONFIG.lr_decay**8)
    assert _scalars(out_dir, "train/learning_rate")[2] == pytest.approx(5e-3 * 0.99**2)
    assert set(_scalars(out_dir, "val/bits_per_dim")) == {8}
    with open(os.path.join(out_dir, run_folder.CONFIG_FILE)) as handle:
        saved = json.load(handle)
    assert saved["ubm"] == dataclasses.asdict(CONFIG)
    assert saved["train_data"].endswith("train-*.tfrecord") and saved["strategy"] == "default"


@pytest.mark.slow
def test_resume_continues_at_the_right_step_with_ema_restored(trained):
    resumed = trained["resumed"]
    assert resumed["step"] == 8 == trained["uninterrupted_step"]
    assert resumed["checkpoint"].endswith("ckpt-8")
    # Steps 7-8 after the restart reproduce the lost checkpoint exactly: weights, Adam
    # state, EMA shadows, dropout RNG state and data position were all restored.
    restarted = run_folder.checkpoint_ema_weights(resumed["checkpoint"])
    assert len(restarted) == len(trained["uninterrupted"]) > 0
    for got, want in zip(restarted, trained["uninterrupted"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # ...and they moved on from step 6 (the averages are not just the restored ones).
    moved = max(
        float(np.abs(a - b).max()) for a, b in zip(restarted, trained["ema_at_6"], strict=True)
    )
    assert moved > 1e-4
    assert resumed["val_bits_per_dim"] == pytest.approx(trained["first"]["val_bits_per_dim"])


@pytest.mark.slow
def test_finished_run_is_not_trained_again(trained, data):
    again = ubm.train_ubm(CONFIG, data["train"], data["val"], trained["out_dir"], log_every_steps=2)
    assert again["step"] == 8 and again["checkpoint"] == trained["resumed"]["checkpoint"]


@pytest.mark.slow
def test_finished_run_returns_saved_metrics_without_reading_shards(trained, tmp_path, monkeypatch):
    metrics = trained["resumed"]
    assert metrics["total_steps"] == 8 and metrics["num_val_images"] == 8  # the whole val split
    out_dir = str(tmp_path / "ubm")
    shutil.copytree(trained["out_dir"], out_dir)
    # The run's shards are corrupt now (train) or gone (val): a finished run never opens them.
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "train-0.tfrecord").write_bytes(b"corrupt")
    train, val = str(faces / "train-*.tfrecord"), str(faces / "val-*.tfrecord")
    config_file = os.path.join(out_dir, run_folder.CONFIG_FILE)
    with open(config_file) as handle:
        saved = json.load(handle)
    with open(config_file, "w") as handle:
        json.dump({**saved, "train_data": train, "val_data": val}, handle)

    def no_reading(*args, **kwargs):
        raise AssertionError("a finished run read its shards")

    monkeypatch.setattr(face_images, "inspect_shards", no_reading)
    monkeypatch.setattr(tf.data, "TFRecordDataset", no_reading)
    again = ubm.train_ubm(CONFIG, train, val, out_dir)
    with open(os.path.join(out_dir, run_folder.METRICS_FILE)) as handle:
        assert again == json.load(handle)
    assert again["step"] == 8 and again["checkpoint"] == metrics["checkpoint"]
    # Other settings (more steps, other data) are not a finished run: the shards are read.
    with pytest.raises(AssertionError, match="read its shards"):
        ubm.train_ubm(dataclasses.replace(CONFIG, max_steps=10), train, val, out_dir)
    with pytest.raises(AssertionError, match="read its shards"):
        ubm.train_ubm(CONFIG, train, None, out_dir)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(trained, data, tmp_path, monkeypatch):
    out_dir = str(tmp_path / "ubm")
    shutil.copytree(trained["out_dir"], out_dir)
    real_loss = training.discretized_mix_logistic_loss

    def poisoned(x, params):
        return real_loss(x, params) * float("nan")

    monkeypatch.setattr(training, "discretized_mix_logistic_loss", poisoned)
    longer = dataclasses.replace(CONFIG, max_steps=12)
    with pytest.raises(training.NonFiniteLossError, match=r"nan at step 9.*ckpt-8"):
        ubm.train_ubm(longer, data["train"], data["val"], out_dir, log_every_steps=2)
    ckpt_dir = os.path.join(out_dir, run_folder.CHECKPOINT_DIR)
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("ckpt-8")
    assert not glob.glob(os.path.join(ckpt_dir, "ckpt-1[0-2].*"))
    for weights in run_folder.checkpoint_ema_weights(tf.train.latest_checkpoint(ckpt_dir)):
        assert np.all(np.isfinite(weights))


@pytest.fixture(scope="module")
def loaded(trained):
    return likelihood.load_ubm(trained["out_dir"])


@pytest.mark.slow
def test_load_ubm_likelihood_maps_match_direct_computation(trained, loaded):
    model = loaded
    images = smooth_images(5, seed=7)
    maps, image_ll = likelihood.likelihood_maps(model, images, batch_size=2)
    assert maps.shape == (5, SIZE, SIZE) and maps.dtype == np.float32
    assert image_ll.shape == (5,) and image_ll.dtype == np.float32
    np.testing.assert_allclose(image_ll, maps.sum(axis=(1, 2)), rtol=1e-5)
    assert np.all(maps < 0)
    # An independent path: a fresh model with the checkpoint's EMA weights assigned.
    reference = run_folder.build_model(CONFIG)
    ema = run_folder.checkpoint_ema_weights(trained["resumed"]["checkpoint"])
    for variable, value in zip(reference.trainable_variables, ema, strict=True):
        variable.assign(value)
    x = images_to_model_input(images)
    direct = pixel_log_likelihood(x, reference(x, training=False)).numpy()
    # rtol: log(cdf_plus - cdf_min) cancels in float32 where the two cdfs are close, so
    # graph and eager runs differ by ~1e-4 relative in a few pixels.
    np.testing.assert_allclose(maps, direct, rtol=1e-3, atol=1e-3)
    # Padding the last batch changes nothing; dropout is off.
    again, _ = likelihood.likelihood_maps(model, images, batch_size=64)
    np.testing.assert_allclose(maps, again, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_likelihood_inputs_are_checked(trained, loaded, tmp_path):
    model = loaded
    with pytest.raises(ValueError, match="uint8"):
        likelihood.likelihood_maps(model, smooth_images(1, 0).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        likelihood.likelihood_maps(model, np.zeros((2, SIZE, SIZE), np.uint8))
    with pytest.raises(ValueError, match="multiple of 4"):
        likelihood.likelihood_maps(model, np.zeros((1, 18, 18, 3), np.uint8))
    empty = tmp_path / "ubm"
    empty.mkdir()
    shutil.copy(os.path.join(trained["out_dir"], run_folder.CONFIG_FILE), empty)
    with pytest.raises(FileNotFoundError, match="run train_ubm first"):
        likelihood.load_ubm(str(empty))


def test_polyak_average_update_and_swap():
    weights = [tf.Variable([1.0, 2.0]), tf.Variable([[3.0]])]
    ema = polyak.PolyakAverage(weights, decay=0.75)
    weights[0].assign([5.0, 6.0])
    weights[1].assign([[7.0]])
    ema.update(weights)
    np.testing.assert_allclose(ema.shadows[0].numpy(), [0.75 * 1 + 0.25 * 5, 0.75 * 2 + 0.25 * 6])
    np.testing.assert_allclose(ema.shadows[1].numpy(), [[0.75 * 3 + 0.25 * 7]])
    with ema.averaged_weights(weights):
        np.testing.assert_allclose(weights[0].numpy(), [2.0, 3.0])
    # The training weights come back after an evaluation, even one that fails.
    with pytest.raises(RuntimeError), ema.averaged_weights(weights):
        raise RuntimeError("evaluation failed")
    np.testing.assert_allclose(weights[0].numpy(), [5.0, 6.0])
    np.testing.assert_allclose(weights[1].numpy(), [[7.0]])
    with pytest.raises(ValueError, match="models differ"):
        ema.update(weights[:1])


def test_bad_inputs_give_clear_errors(data, tmp_path):
    out_dir = str(tmp_path / "ubm")
    with pytest.raises(FileNotFoundError, match="No TFRecord shards match"):
        ubm.train_ubm(CONFIG, str(tmp_path / "missing-*.tfrecord"), None, out_dir)
    # config.json was written first; another architecture in the same folder is refused.
    with pytest.raises(ValueError, match="another architecture"):
        ubm.train_ubm(dataclasses.replace(CONFIG, nr_filters=16), data["train"], None, out_dir)
    with open(data["folder"] + "/train-0.tfrecord", "rb") as handle:
        raw = handle.read()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.tfrecord").write_bytes(raw[: len(raw) // 2 + 3])
    with pytest.raises(face_images.CorruptShardError, match="cut.tfrecord"):
        ubm.train_ubm(CONFIG, str(bad / "*.tfrecord"), None, out_dir)
    with pytest.raises(ValueError, match="multiple of 4"):
        ubm.train_ubm(dataclasses.replace(CONFIG, image_size=18), data["train"], None, out_dir)
    with pytest.raises(face_images.CorruptShardError, match="32x32 were expected"):
        ubm.train_ubm(
            dataclasses.replace(CONFIG, image_size=32), data["train"], None, str(tmp_path / "b")
        )
    with pytest.raises(ValueError, match="Unknown strategy"):
        strategies.make_strategy("tpu_pod")


@pytest.mark.slow
def test_mirrored_strategy_step_equals_one_device_step(data, mirrored_run, tmp_path):
    """The two replicas split the global batch; the reduced loss, the all-reduced Adam
    moments, the weights and the averages after one step must equal one eager step on
    one device."""
    config = MIRRORED_CONFIG
    stdout, stderr = mirrored_run["process"].communicate(timeout=300)
    assert mirrored_run["process"].returncode == 0, stderr[-3000:]
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
    metrics = json.loads(line[len("RESULT ") :])
    with open(os.path.join(mirrored_run["out_dir"], run_folder.CONFIG_FILE)) as handle:
        assert json.load(handle)["num_replicas"] == 2
    assert metrics["step"] == 1

    # The same first step on one device, eagerly: same seed, same first batch.
    strategy = tf.distribute.get_strategy()
    reference = training.build_run(config, strategy, str(tmp_path / "ref"), keep=1)
    info = face_images.inspect_shards(data["train"])
    records = face_images.training_record_stream(
        info.paths, info.num_examples, seed=config.seed, shuffle_buffer=info.num_examples
    )
    images = next(iter(face_images.parse_images(records, 8, crop_size=SIZE)))
    x = images_to_model_input(images)
    reference.model.data_dependent_init(x)
    variables = reference.model.trainable_variables
    reference.ema.reset(variables)
    with tf.GradientTape() as tape:
        nll = training.discretized_mix_logistic_loss(x, reference.model(x, training=True))
        loss = nll / (8 * SIZE * SIZE * 3)
    grads = tape.gradient(loss, variables)
    reference.optimizer.apply_gradients(zip(grads, variables, strict=True))
    reference.ema.update(variables)
    assert metrics["train_bits_per_dim"] == pytest.approx(
        float(nll) / (8 * SIZE * SIZE * 3 * np.log(2.0)), rel=1e-5
    )

    groups = {
        "weights": variables,
        "averages": reference.ema.shadows,
        "adam": reference.optimizer.variables,
    }
    expected = {name: [np.array(v) for v in group] for name, group in groups.items()}
    # Load the mirrored run's checkpoint into the same objects and compare.
    reference.checkpoint.restore(metrics["checkpoint"]).assert_existing_objects_matched()
    for name, group in groups.items():
        assert len(group) == len(expected[name]) > 0
        for got, want in zip(group, expected[name], strict=True):
            got = np.array(got)
            if name == "adam":
                # A wrong loss scale would change the moments by 2x (m) or 4x (v).
                scale = float(np.abs(want).max())
                np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale)
            else:
                # Two half-batch gradients summed round differently from one full-batch
                # gradient; Adam's first step (+-lr per weight, by the gradient's sign)
                # amplifies that for near-zero gradients only: a weight whose tiny
                # gradient changes sign moves by 2 lr (plus the update's own round-off),
                # while the rest agree closely.
                diff = np.abs(got - want)
                assert diff.max() <= 2 * config.learning_rate * (1 + 1e-4), name
                assert diff.mean() <= 1e-3 * config.learning_rate, (name, diff.mean())


def _run_binaries(
    *commands: tuple[str, ...], timeout: float = 120
) -> list[subprocess.CompletedProcess]:
    """Runs `python -m experiments.train_ubm` with each tuple of arguments, all at once."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.train_ubm", *args],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        for args in commands
    ]
    return communicate_all(processes, timeout=timeout)


@pytest.mark.slow
def test_train_ubm_binary_help_and_usage_errors(data, tmp_path):
    from experiments import train_ubm as binary  # defines its flags; parses nothing

    assert binary.STRATEGIES == strategies.STRATEGIES
    shown, unknown, failed, misspelt, mistyped = _run_binaries(
        ("--help",),
        ("--config=bogus", f"--workdir={tmp_path / 'a'}", "--train_data=x"),
        (
            "--config=smoke",
            f"--workdir={tmp_path / 'b'}",
            f"--train_data={data['folder']}/train-*.tfrecord",
        ),
        ("--config=smoke", f"--workdir={tmp_path / 'd'}", "--config.ubm.nr_filterz=8"),
        ("--config=smoke", f"--workdir={tmp_path / 'e'}", "--config.ubm.max_steps=two"),
    )
    assert misspelt.returncode != 0 and "config.ubm.nr_filterz" in misspelt.stderr
    assert mistyped.returncode != 0 and "--config.ubm.max_steps=two" in mistyped.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
    assert "--train_data" in shown.stdout and "--strategy" in shown.stdout
    assert "--config.ubm.max_steps" in shown.stdout  # the usage names the overrides
    assert "Traceback" not in shown.stderr
    assert unknown.returncode != 0
    assert "Unknown config 'bogus'" in unknown.stderr and "Traceback" not in unknown.stderr
    assert failed.returncode != 0
    assert "16x16 crops, but 64x64 were expected" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.slow
def test_train_ubm_records_dotted_overrides(data, tmp_path):
    # Any config field by its dotted name; recorded where the UBM and the run keep
    # their configuration.
    (overridden,) = _run_binaries(
        (
            "--config=smoke",
            f"--workdir={tmp_path}",
            f"--train_data={data['train']}",
            f"--val_data={data['val']}",
            "--config.ubm.nr_filters=8",
            "--config.ubm.max_steps=2",
            "--config.ubm.image_size=16",
            "--config.ubm.batch_size=4",
            "--config.ubm.eval_batches=1",
        ),
        timeout=400,
    )
    assert overridden.returncode == 0, overridden.stderr[-3000:]
    for path in (tmp_path / "ubm" / "config.json", tmp_path / "config.json"):
        recorded = json.loads(path.read_text())["ubm"]
        assert (recorded["nr_filters"], recorded["max_steps"]) == (8, 2), path
        # A batch of 4 instead of 8: the learning rate scaled linearly.
        assert recorded["learning_rate"] == pytest.approx(0.5e-3), path
