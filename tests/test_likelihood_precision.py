"""The likelihood stage with a real (tiny, untrained) UBM: the tf.data pipeline gives
the eager reference's records byte for byte, mixed-precision maps stay close to
float32 ones, and a folder never mixes maps of two precisions.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data_prep import face_records, files, likelihood_records
from experiments.configs import load_config
from experiments.pipeline import likelihoods as likelihood_extraction
from experiments.pipeline.workdir import Workdir
from pixelcnn_pp import likelihood, run_folder
from pixelcnn_pp.config import UBMConfig
from pixelcnn_pp.ema import PolyakAverage

TINY = UBMConfig(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, image_size=16)
VIDEOS = {("train", "original"): 5, ("train", "Deepfakes"): 0, ("test", "FaceSwap"): 4}


def _write_tiny_ubm(ubm_dir: str) -> None:
    """A train_ubm-like folder (config.json, one checkpoint) of an untrained tiny UBM."""
    model = run_folder.build_model(TINY)
    ema = PolyakAverage(model.trainable_variables, TINY.ema_decay)
    holder = run_folder.model_variables_tracker(model)
    tf.train.Checkpoint(model=holder, ema=ema).save(
        os.path.join(run_folder.checkpoint_dir(ubm_dir), "ckpt")
    )
    files.write_json_atomically(run_folder.config_path(ubm_dir), {"ubm": dataclasses.asdict(TINY)})


def _faces_tree(root: str, rng) -> list[np.ndarray]:
    images = []
    for (split, source), n_frames in VIDEOS.items():
        crops = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(n_frames)]
        faces = [
            face_records.FaceExample(
                image=crop,
                video="001",
                frame=i,
                method=source,
                label=int(source != "original"),
                split=split,
                compression="raw",
                box=(0, 0, 16, 16),
            )
            for i, crop in enumerate(crops)
        ]
        path = os.path.join(root, split, source, "001.tfrecord")
        files.write_shard_atomically(path, [face_records.serialize_face(f) for f in faces])
        images.extend(crops)
    return images


@pytest.fixture(scope="module")
def ubm_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ubm"))
    _write_tiny_ubm(path)
    return path


@pytest.mark.slow
def test_tf_data_pipeline_gives_the_eager_records_byte_for_byte(tmp_path, rng, ubm_dir):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    _faces_tree(faces_dir, rng)
    model = likelihood.load_ubm(ubm_dir)
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)
    stats = likelihood_extraction.extract_all(
        tasks, likelihood.batch_likelihood_fn(model, 4), batch_size=4, readers=2, readahead=2
    )
    assert stats["written"] == 3 and stats["frames_written"] == 9
    # The eager reference: every shard parsed in Python, crops in the same batches of 4.
    faces = [face for task in tasks for face in likelihood_extraction.read_faces(task.face_shard)]
    maps, lls = likelihood.likelihood_maps(model, np.stack([f.image for f in faces]), 4)
    expected = iter(
        likelihood_records.serialize_likelihood(f, m, ll)
        for f, m, ll in zip(faces, maps, lls.tolist(), strict=True)
    )
    for task in tasks:
        for record in tf.data.TFRecordDataset(task.output_shard).as_numpy_iterator():
            assert record == next(expected)
    assert next(expected, None) is None


@pytest.mark.slow
def test_mixed_bfloat16_maps_are_close_to_float32(rng, ubm_dir):
    images = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    result = likelihood.compare_precisions(ubm_dir, images, "mixed_bfloat16", batch_size=8)
    model = likelihood.load_ubm(ubm_dir, mixed_precision="mixed_bfloat16")
    assert model.compute_dtype == "bfloat16"
    maps, _ = likelihood.likelihood_maps(model, images, 8)
    assert maps.dtype == np.float32 and np.all(np.isfinite(maps))
    # Bound for this untrained tiny UBM (sharper trained mixtures differ more: BENCHMARKS.md).
    assert result["mean_abs_diff_nats"] < 0.05
    assert 0 < result["max_abs_diff_nats"] < 1.0


def test_maps_of_another_precision_are_not_mixed(tmp_path):
    out = str(tmp_path / "likelihoods")
    likelihood_extraction.prepare_output(out, {"ubm_fingerprint": "aaaa"})  # older: float32
    likelihood_extraction.prepare_output(out, {"ubm_fingerprint": "aaaa", "mixed_precision": ""})
    with pytest.raises(ValueError, match="computed in float32.*mixed_bfloat16.*two precisions"):
        likelihood_extraction.prepare_output(
            out, {"ubm_fingerprint": "aaaa", "mixed_precision": "mixed_bfloat16"}
        )
    with pytest.raises(ValueError, match="float32 convolutions.*bfloat16 convolutions"):
        likelihood_extraction.prepare_output(
            out, {"ubm_fingerprint": "aaaa", "mixed_precision": "", "matmul_dtype": "bfloat16"}
        )


@pytest.mark.slow
def test_stage_records_precision_and_batch_and_refuses_another_precision(tmp_path, rng, ubm_dir):
    faces_dir = str(tmp_path / "faces")
    _faces_tree(faces_dir, rng)
    workdir = Workdir(str(tmp_path / "work"))
    config = load_config("smoke")
    manifest = likelihood_extraction.extract_likelihoods(
        config, workdir, ubm_dir=ubm_dir, faces_dir=faces_dir, batch_size=3
    )
    assert manifest["last_run"]["frames_written"] == 9
    with open(os.path.join(workdir.likelihoods, "config.json")) as f:
        saved = json.load(f)
    assert saved["mixed_precision"] == "float32" and saved["batch_size"] == 3
    with pytest.raises(ValueError, match="two precisions"):
        likelihood_extraction.extract_likelihoods(
            config,
            workdir,
            ubm_dir=ubm_dir,
            faces_dir=faces_dir,
            mixed_precision="mixed_bfloat16",
        )
    with pytest.raises(ValueError, match="Unknown mixed_precision"):
        likelihood_extraction.extract_likelihoods(
            config, workdir, ubm_dir=ubm_dir, faces_dir=faces_dir, mixed_precision="fp8"
        )
