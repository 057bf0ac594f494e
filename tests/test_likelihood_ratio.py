"""The background model and the likelihood-ratio localisation score (Ren et al., NeurIPS
2019): random value replacement, the background maps paired with the UBM's, and a trace
both models see cancelling in the ratio while a trace only the UBM sees remains."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from likelihood_helpers import quarter_mask, write_masked_shard

from data_prep import files
from data_prep.methods import ORIGINAL
from experiments.pipeline import localisation, ubm
from experiments.pipeline.workdir import CONFIG_FILE, SHARD_SUFFIX, Workdir
from pixelcnn_pp import perturbation
from pixelcnn_pp.config import UBMConfig, validate_config

SIZE = 64
UBM_ONLY, SHARED = "Deepfakes", "FaceSwap"  # a trace only the UBM sees; one both see


def test_replacement_rate_values_and_determinism():
    images = tf.fill([4, SIZE, SIZE, 3], tf.constant(7, tf.uint8))
    seed = tf.constant([3, 11], tf.int64)
    out = perturbation.replace_values(images, 0.2, seed).numpy()
    changed = out != 7
    # A replaced value equals the original with probability 1/256.
    assert changed.mean() == pytest.approx(0.2 * 255 / 256, abs=0.01)
    assert abs(np.mean(out[changed]) - 127.5) < 3 and out[changed].max() > 250
    assert np.array_equal(out, perturbation.replace_values(images, 0.2, seed).numpy())
    assert not np.array_equal(out, perturbation.replace_values(images, 0.2, seed + 1).numpy())
    assert perturbation.replace_values(images, 0.0, seed) is images


def test_a_resumed_stream_is_perturbed_as_the_whole_one():
    images = tf.data.Dataset.from_tensor_slices(np.full((10, 8, 8, 3), 100, np.uint8))
    whole = [x.numpy() for x in perturbation.perturb_stream(images, 0.3, seed=5)]
    resumed = [x.numpy() for x in perturbation.perturb_stream(images.skip(6), 0.3, 5, 6)]
    assert len(resumed) == 4 and all(
        np.array_equal(a, b) for a, b in zip(whole[6:], resumed, strict=True)
    )
    assert not np.array_equal(whole[0], whole[1])  # each image its own replacement


def test_the_rate_is_checked_and_a_folder_keeps_its_rate(tmp_path):
    with pytest.raises(ValueError, match="perturbation_rate"):
        validate_config(UBMConfig(perturbation_rate=1.0))
    config = UBMConfig(nr_resnet=1, nr_filters=4, perturbation_rate=0.2)
    out = str(tmp_path / "background_ubm")
    ubm.write_run_config(out, config, "train/*.tfrecord", None, "default", 1)
    with pytest.raises(ValueError, match="perturbation_rate: saved 0.2, now 0.0"):
        ubm.write_run_config(
            out, UBMConfig(nr_resnet=1, nr_filters=4), "train/*.tfrecord", None, "default", 1
        )


def _write_trees(workdir: Workdir, rate: float = 0.2, frames: int = 3) -> None:
    """UBM and background maps of the same crops: both share per-pixel noise; UBM_ONLY
    drops 2 nats in the mask in the UBM's map only, SHARED in both maps."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 3), ("test", 4)):
        for i in range(n):
            noise = [-4 + rng.normal(0, 1, (SIZE, SIZE)) for _ in range(frames)]
            for tree in (workdir.likelihoods, workdir.background_likelihoods):
                maps = [m.astype(np.float32) for m in noise]
                write_masked_shard(tree, split, ORIGINAL, f"{split}{i}", maps, [None] * frames)
            for method in (UBM_ONLY, SHARED):
                masks = [quarter_mask(rng) for _ in range(frames)]
                noise = [-4 + rng.normal(0, 1, (SIZE, SIZE)) for _ in range(frames)]
                drop = [2.0 * (m > 0) for m in masks]
                ubm_maps = [(x - d).astype(np.float32) for x, d in zip(noise, drop, strict=True)]
                shared = method == SHARED
                bg_maps = [
                    (x - d * shared).astype(np.float32) for x, d in zip(noise, drop, strict=True)
                ]
                write_masked_shard(
                    workdir.likelihoods, split, method, f"{split}{i}_x", ubm_maps, masks
                )
                if split != "train":
                    write_masked_shard(
                        workdir.background_likelihoods,
                        split,
                        method,
                        f"{split}{i}_x",
                        bg_maps,
                        masks,
                    )
    background_ubm = os.path.join(workdir.root, "background_ubm")
    files.write_json_atomically(
        os.path.join(background_ubm, CONFIG_FILE), {"ubm": {"perturbation_rate": rate}}
    )
    files.write_json_atomically(
        os.path.join(workdir.background_likelihoods, CONFIG_FILE), {"ubm_dir": background_ubm}
    )


@pytest.mark.slow  # ~10 s: three scores, two methods, the figure
def test_the_ratio_keeps_what_only_the_ubm_sees_and_cancels_what_both_see(tmp_path):
    workdir = Workdir(str(tmp_path))
    _write_trees(workdir)
    localisation.score_localisation(workdir, config_name="smoke", bootstrap_samples=20)
    import pandas as pd

    rows = pd.read_csv(os.path.join(workdir.results, localisation.CSV))
    by = {(r.method, r.score): r for r in rows.itertuples()}
    assert set(rows.score) == set(localisation.SCORES)
    assert by[(UBM_ONLY, "likelihood_ratio")].pixel_auc > 0.99  # the noise cancels too
    assert by[(UBM_ONLY, "neg_loglik")].pixel_auc < by[(UBM_ONLY, "likelihood_ratio")].pixel_auc
    assert by[(SHARED, "neg_loglik")].pixel_auc > 0.8
    assert abs(by[(SHARED, "likelihood_ratio")].pixel_auc - 0.5) < 0.02  # both see it
    with open(os.path.join(workdir.results, localisation.MARKDOWN)) as f:
        assert "with 20% of their values" in f.read()


def test_incomplete_or_mismatched_background_maps(tmp_path):
    workdir = Workdir(str(tmp_path))
    _write_trees(workdir, frames=1)
    likelihoods, background = workdir.likelihoods, workdir.background_likelihoods
    assert localisation.background_shards_complete(likelihoods, background, UBM_ONLY)
    shard = os.path.join(background, "test", UBM_ONLY, "test{}_x" + SHARD_SUFFIX)
    os.replace(shard.format(1), shard.format(0))
    assert not localisation.background_shards_complete(likelihoods, background, UBM_ONLY)
    # Another video's maps under this video's name: refused, not paired.
    shutil.copy(shard.format(0), shard.format(1))
    with pytest.raises(ValueError, match="not of the crops"):
        list(localisation.read_batches(likelihoods, "test", UBM_ONLY, SIZE, background))
    # Maps of a model trained without perturbation are no background maps.
    files.write_json_atomically(
        os.path.join(workdir.root, "background_ubm", CONFIG_FILE), {"ubm": {"perturbation_rate": 0}}
    )
    with pytest.raises(ValueError, match="no background model"):
        localisation.background_maps(workdir)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config.ubm.perturbation_rate=0.2"], "applies to the background model only"),
        (
            ["--background", "--config.background.perturbation_rate=0"],
            "background.perturbation_rate must be > 0",
        ),
        (
            ["--background", "--config.background.perturbation_rate=1.5"],
            "perturbation_rate must be in",
        ),
    ],
)
def test_train_ubm_background_flag_mistakes(tmp_path, flags, message):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train_ubm", "--config=smoke", f"--workdir={tmp_path}"]
        + flags,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and message in result.stderr
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


def test_background_maps_without_a_background_model_say_what_to_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.extract_likelihoods", "--config=smoke"]
        + [f"--workdir={tmp_path}", "--background"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "train_ubm --background" in result.stderr
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)
