"""Localisation against the manipulation masks (experiments.pipeline.localisation and
localisation_metrics): histogram metrics against sklearn, the shuffled-mask control,
frames without a mask counted, the threshold chosen on val, and the output files, on
generated maps."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from likelihood_helpers import quarter_mask, write_masked_shard
from sklearn import metrics as sk_metrics

from data_prep.methods import ORIGINAL
from experiments.pipeline import localisation, localisation_metrics
from experiments.pipeline.workdir import Workdir

SIZE = 64
LOCAL, RANDOM = "Deepfakes", "NeuralTextures"  # a local trace, and none at all


def write_masked_tree(root: str, seed: int = 0, frames: int = 4) -> None:
    """Originals in every split; LOCAL: maps 2 nats lower inside the mask; RANDOM:
    noise only. The first test video of each method has two frames without a mask and
    one with an empty mask."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 3), ("val", 3), ("test", 4)):
        for i in range(n):
            maps = [-4 + rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32) for _ in range(frames)]
            write_masked_shard(root, split, ORIGINAL, f"{split}{i}", maps, [None] * frames)
            for method in (LOCAL, RANDOM):
                masks = [quarter_mask(rng) for _ in range(frames)]
                if split == "test" and i == 0:
                    masks[0] = masks[1] = None
                    masks[2] = np.zeros((SIZE, SIZE), np.uint8)
                maps = []
                for mask in masks:
                    loglik = -4 + rng.normal(0, 1, (SIZE, SIZE))
                    if method == LOCAL and mask is not None:
                        loglik -= 2.0 * (mask > 0)
                    maps.append(loglik.astype(np.float32))
                write_masked_shard(root, split, method, f"{split}{i}_x", maps, masks)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    workdir = Workdir(str(tmp_path_factory.mktemp("loc")))
    write_masked_tree(workdir.likelihoods)
    paths = localisation.score_localisation(workdir, config_name="smoke", bootstrap_samples=50)
    return workdir, paths


def test_histogram_auc_and_ap_equal_sklearn_on_the_binned_scores():
    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.3
    s = rng.normal(10, 3, 5000) + 1.5 * y
    index = localisation_metrics.bin_index(s, "neg_loglik")
    pos = np.bincount(index[y], minlength=localisation_metrics.BINS)
    neg = np.bincount(index[~y], minlength=localisation_metrics.BINS)
    assert localisation_metrics.histogram_auc(pos, neg) == pytest.approx(
        sk_metrics.roc_auc_score(y, index), abs=1e-12
    )
    assert localisation_metrics.histogram_ap(pos, neg) == pytest.approx(
        sk_metrics.average_precision_score(y, index), abs=1e-12
    )
    # 0.02-nat bins: the binned AUC is the exact one to within the pairs sharing a bin.
    assert localisation_metrics.histogram_auc(pos, neg) == pytest.approx(
        sk_metrics.roc_auc_score(y, s), abs=2e-3
    )


def test_the_control_gives_each_frame_a_mask_of_another_video():
    videos = np.repeat(["a", "b", "c", "d"], [3, 2, 4, 3])
    source, same = localisation_metrics.derangement(videos, seed=0)
    assert sorted(source) == list(range(len(videos))) and same == 0
    assert np.all(videos[source] != videos)
    assert np.array_equal(source, localisation_metrics.derangement(videos, seed=0)[0])


@pytest.mark.slow  # the module's scored tree: ~8 s
def test_local_trace_localises_random_maps_and_the_control_do_not(scored):
    workdir, _ = scored
    rows = pd.read_csv(os.path.join(workdir.results, localisation.CSV))
    by = {(r.method, r.score): r for r in rows.itertuples()}
    assert set(rows.score) == {"neg_loglik", "pristine_diff"}  # no background maps here
    for score in ("neg_loglik", "pristine_diff"):
        local, random = by[(LOCAL, score)], by[(RANDOM, score)]
        assert local.pixel_auc > 0.8 and local.frame_auc_mean > 0.8, score
        assert local.pixel_auc_low <= local.pixel_auc <= local.pixel_auc_high
        assert abs(local.control_pixel_auc - 0.5) < 0.05, score
        assert abs(random.pixel_auc - 0.5) < 0.05 and abs(random.control_pixel_auc - 0.5) < 0.05
        assert local.iou > random.iou
    # Frames without a mask are left out and counted; the empty mask has no frame AUC.
    for method in (LOCAL, RANDOM):
        row = by[(method, "neg_loglik")]
        assert (row.frames, row.frames_without_mask, row.frames_degenerate) == (14, 2, 1)
        assert row.videos == 4 and row.val_frames == 12
        assert row.mask_fraction == pytest.approx(13 * 0.25 / 14, abs=1e-4)  # csv: 4 digits


@pytest.mark.slow
def test_the_output_files(scored):
    workdir, paths = scored
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        [localisation.CSV, localisation.MARKDOWN, localisation.LATEX, localisation.FIGURE]
    )
    rows = pd.read_csv(os.path.join(workdir.results, localisation.CSV))
    assert list(rows.columns) == list(localisation.COLUMNS) and len(rows) == 4
    with open(os.path.join(workdir.results, localisation.MARKDOWN)) as f:
        md = f.read()
    assert md.startswith("_Dataset: ") and "config: smoke" in md.splitlines()[0]
    assert md.count("| DF | ") == 2 and md.count("| NT | ") == 2 and "pristine_diff:" in md
    with open(os.path.join(workdir.results, localisation.LATEX)) as f:
        tex = f.read()
    assert tex.startswith(r"\begin{table}") and r"\end{tabular}" in tex and "pristine\\_diff" in tex
    assert os.path.getsize(os.path.join(workdir.results, localisation.FIGURE)) > 1000


def test_the_iou_threshold_is_chosen_on_val_not_test(tmp_path):
    # val: mask at -8 nats, rest -4 (neg_loglik 8 vs 4); test: 14 vs 10. The val
    # threshold (between 4 and 8) marks every test pixel; one chosen on test would not.
    rng = np.random.default_rng(2)
    root = str(tmp_path / "likelihoods")
    for split, (inside, outside) in (("val", (-8.0, -4.0)), ("test", (-14.0, -10.0))):
        for i in range(2):
            masks = [quarter_mask(rng) for _ in range(3)]
            maps = [np.where(m > 0, inside, outside).astype(np.float32) for m in masks]
            write_masked_shard(root, split, LOCAL, f"{split}{i}_x", maps, masks)
    rows, _ = localisation.score_method(root, LOCAL, None, bootstrap_samples=10)
    (row,) = rows
    assert row["score"] == "neg_loglik" and row["val_iou"] == pytest.approx(1.0)
    assert 4.0 < row["iou_threshold"] <= 8.0
    assert row["iou"] == pytest.approx(0.25)  # every pixel marked: IoU = mask area
    assert row["pixel_auc"] == pytest.approx(1.0)


def test_no_maps_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="extract_likelihoods"):
        localisation.score_localisation(Workdir(str(tmp_path)))
