"""How detection grows with the UBM: several UBMs, their maps, their detectors.

The paper's UBM (R=5, F=160, 5 epochs on a GPU) is out of a CPU's reach; this study
measures the curve a CPU can reach instead. For each point (R, F, steps) on one face
set (`prepare_faces` output, shared read-only by every point): train the UBM on the
pristine training crops, extract maps of a fixed subset of the training crops and of
every val and test crop, train the known-attack detectors on them, and record the
UBM's validation bits/dim, its training FLOPs (`pixelcnn_pp.flops`), its wall time and
the detectors' val and test AUC. Each point is a work directory of its own
(`<out>/<point>/`) whose stages skip finished work, so an interrupted study resumes.

Only the UBM's size and length change between points; the learning-rate schedule is
the config's, and the Polyak average spans a tenth of each run (`ema_decay = 1 - 10 /
steps`), so a short run is not judged by weights still near their initial values.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import time
from typing import Any

import numpy as np

from classifier.config import KNOWN, MAPS, MAPS_AND_GREY, PIXELS_GREY, PIXELS_RGB
from classifier.inputs import LABELS
from classifier.metrics import VAL_THRESHOLD_METRIC
from data_prep.files import read_json
from data_prep.methods import ORIGINAL
from experiments.configs.base import ExperimentConfig
from experiments.pipeline import detection, likelihoods, ubm
from experiments.pipeline.workdir import LIKELIHOODS, MANIFEST_FILE, SHARD_SUFFIX, Workdir
from pixelcnn_pp import flops

_POINT = re.compile(r"^r(\d+)f(\d+)s(\d+)$")


@dataclasses.dataclass(frozen=True)
class ScalingPoint:
    """One UBM of the study: `nr_resnet` R, `nr_filters` F, training `steps`."""

    nr_resnet: int
    nr_filters: int
    steps: int

    @property
    def name(self) -> str:
        return f"r{self.nr_resnet}f{self.nr_filters}s{self.steps}"

    @classmethod
    def parse(cls, name: str) -> ScalingPoint:
        """`r1f32s1000` -> R=1, F=32, 1000 steps.

        Raises:
          ValueError: not of the form r<R>f<F>s<steps> with positive numbers.
        """
        match = _POINT.match(name.strip().lower())
        if not match or min(int(g) for g in match.groups()) < 1:
            raise ValueError(
                f"UBM point {name!r} is not r<R>f<F>s<steps> with positive numbers "
                "(e.g. r1f32s1000: R=1, F=32, 1,000 steps)."
            )
        return cls(*(int(g) for g in match.groups()))


def point_config(base: ExperimentConfig, point: ScalingPoint) -> ExperimentConfig:
    """`base` with the point's UBM: R, F, steps; evaluated once, at the end."""
    ubm = dataclasses.replace(
        base.ubm,
        nr_resnet=point.nr_resnet,
        nr_filters=point.nr_filters,
        max_steps=point.steps,
        ema_decay=max(0.0, 1.0 - 10.0 / point.steps),
        eval_every_steps=point.steps,
        checkpoint_every_steps=min(250, point.steps),
    )
    return dataclasses.replace(base, ubm=ubm)


def training_flops(config: ExperimentConfig) -> float:
    """FLOPs of the UBM's training: 3 forward passes' worth per image (forward and
    backward), batch x steps images."""
    ubm = config.ubm
    forward = flops.pixelcnn_pp_forward_flops(
        ubm.nr_resnet, ubm.nr_filters, ubm.nr_logistic_mix, ubm.image_size, ubm.image_size
    )
    return 3.0 * forward * ubm.batch_size * ubm.max_steps


def point_dir(out_dir: str, point: ScalingPoint) -> str:
    """The work directory of one point."""
    return os.path.join(out_dir, point.name)


def link_face_subset(faces_dir: str, out_dir: str, per_class: dict[str, int], seed: int) -> int:
    """The study's face set in `out_dir`: links to `per_class[split]` shards of each
    class of a split (drawn with `seed`; a split not named, or 0: every shard), with the
    manifest, so the stages read them as a faces folder. Returns the shards linked.

    The UBM still trains on every pristine training crop; the subset only bounds the
    maps to extract and the detectors' training time per point. Links of an earlier,
    larger subset that this one leaves out are removed, with their maps.
    """
    rng = np.random.default_rng(seed)
    wanted = set()
    for split in sorted(os.listdir(faces_dir)):
        split_dir = os.path.join(faces_dir, split)
        if not os.path.isdir(split_dir):
            continue
        by_label: dict[bool, list[str]] = {True: [], False: []}
        for source in sorted(os.listdir(split_dir)):
            shards = sorted(glob.glob(os.path.join(split_dir, source, "*" + SHARD_SUFFIX)))
            by_label[source == ORIGINAL] += shards
        for shards in by_label.values():
            count = per_class.get(split, 0)
            if 0 < count < len(shards):
                shards = sorted(rng.choice(shards, count, replace=False))
            wanted.update(os.path.relpath(shard, faces_dir) for shard in shards)
    for relative in wanted:
        target = os.path.join(out_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.path.abspath(os.path.join(faces_dir, relative)), target)
    stale = [
        os.path.relpath(path, out_dir)
        for path in glob.glob(os.path.join(out_dir, "*", "*", "*" + SHARD_SUFFIX))
        if os.path.relpath(path, out_dir) not in wanted
    ]
    maps_dir = os.path.join(os.path.dirname(os.path.normpath(out_dir)), LIKELIHOODS)
    for relative in stale:
        os.remove(os.path.join(out_dir, relative))
        if os.path.exists(os.path.join(maps_dir, relative)):
            os.remove(os.path.join(maps_dir, relative))
    manifest = os.path.join(out_dir, MANIFEST_FILE)
    if not os.path.lexists(manifest):
        os.symlink(os.path.abspath(os.path.join(faces_dir, MANIFEST_FILE)), manifest)
    return len(wanted)


def _test_and_val(report: dict[str, Any] | None) -> dict[str, Any]:
    """The study's figures of one detector's metrics.json (None: not run)."""
    if report is None:
        return {}
    figures = {}
    for split in ("val", "test"):
        for metric in ("frame_auc", "frame_accuracy", "frame_eer"):
            entry = report[split][metric]
            figures[f"{split}_{metric}"] = entry["value"]
            if split == "test":
                figures[f"test_{metric}_ci"] = [entry["ci_low"], entry["ci_high"]]
    threshold = report["test"].get(VAL_THRESHOLD_METRIC)
    if threshold is not None:
        figures[f"test_{VAL_THRESHOLD_METRIC}"] = threshold["value"]
        figures[f"test_{VAL_THRESHOLD_METRIC}_ci"] = [threshold["ci_low"], threshold["ci_high"]]
    return figures


def run_point(
    base: ExperimentConfig,
    point: ScalingPoint,
    faces_dir: str,
    out_dir: str,
    per_class: dict[str, int],
    inputs: tuple[str, ...],
    extract_batch_size: int = 64,
) -> dict[str, Any]:
    """One point of the study, resumed where it stopped; returns its figures.

    Args:
      base: the configuration the points vary (`cpu`); its detector trains the LeNets.
      point: the UBM's R, F and steps.
      faces_dir: the prepare_faces folder shared by every point (read only).
      out_dir: the study's folder; the point works in `<out_dir>/<point>/`.
      per_class: {split: crops per class} mapped for the detectors (0 or absent: all).
      inputs: the detector inputs (`classifier.inputs`), the maps first.
      extract_batch_size: crops per forward pass when mapping.

    Returns:
      {"point", "nr_resnet", "nr_filters", "steps", "training_flops", "ubm_seconds",
      "ubm_val_bits_per_dim", "ubm_train_images_per_sec", "extract_seconds",
      "extract_images_per_sec", and per input `<inputs>`: val/test AUC, accuracy at
      0.5 and at the val threshold, EER, test intervals}.
    """
    config = point_config(base, point)
    config = dataclasses.replace(
        config, detector=dataclasses.replace(config.detector, inputs=tuple(inputs))
    )
    workdir = Workdir(point_dir(out_dir, point))
    link_face_subset(faces_dir, workdir.faces, per_class, config.ubm.seed)
    shards = os.path.join(faces_dir, "{}", ORIGINAL, "*" + SHARD_SUFFIX)
    start = time.monotonic()
    ubm_metrics = ubm.train_ubm(
        config.ubm, shards.format("train"), shards.format("val"), workdir.ubm
    )
    ubm_seconds = time.monotonic() - start
    start = time.monotonic()
    manifest = likelihoods.extract_likelihoods(
        config,
        workdir,
        batch_size=extract_batch_size,
        matmul_dtype=config.ubm.matmul_dtype,
        mixed_precision=config.ubm.mixed_precision,
    )
    extract_seconds = time.monotonic() - start
    detection.run_protocol(config, workdir, KNOWN)
    figures: dict[str, Any] = {
        "point": point.name,
        "nr_resnet": point.nr_resnet,
        "nr_filters": point.nr_filters,
        "steps": point.steps,
        "batch_size": config.ubm.batch_size,
        "matmul_dtype": config.ubm.matmul_dtype,
        "training_flops": training_flops(config),
        "ubm_seconds_this_run": round(ubm_seconds, 1),
        "ubm_val_bits_per_dim": ubm_metrics.get("val_bits_per_dim"),
        "ubm_train_images_per_sec": ubm_metrics.get("images_per_sec"),
        "extract_seconds_this_run": round(extract_seconds, 1),
        "maps": manifest.get("shards_total"),
    }
    for kind in inputs:
        for method in detection.finished_methods(workdir, KNOWN, kind):
            report = read_json(
                os.path.join(workdir.protocol(KNOWN, kind), method, detection.METRICS_FILE)
            )
            figures[f"{kind}/{method}"] = _test_and_val(report)
    return figures


def plot_scaling(rows: list[dict[str, Any]], path: str) -> None:
    """Two panels from the points' figures (`run_point`): test AUC of the LeNet on maps
    (and on maps + grey pixels) against the UBM's training FLOPs, the pixel baselines as
    lines; and the UBM's validation bits/dim against that AUC. Intervals: 95% bootstrap."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not rows:
        return
    method = next(k.split("/", 1)[1] for k in rows[0] if k.startswith(f"{MAPS}/"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, marker in ((MAPS, "o"), (MAPS_AND_GREY, "s")):
        points = [(r["training_flops"], r.get(f"{kind}/{method}")) for r in rows]
        points = [(x, f) for x, f in points if f]
        if not points:
            continue
        xs = [x for x, _ in points]
        ys = [f["test_frame_auc"] for _, f in points]
        low = [y - f["test_frame_auc_ci"][0] for y, (_, f) in zip(ys, points, strict=True)]
        high = [f["test_frame_auc_ci"][1] - y for y, (_, f) in zip(ys, points, strict=True)]
        left.errorbar(xs, ys, yerr=[low, high], marker=marker, capsize=3, label=LABELS[kind])
    for kind, style in ((PIXELS_GREY, "--"), (PIXELS_RGB, ":")):
        figures = next((r[f"{kind}/{method}"] for r in rows if f"{kind}/{method}" in r), None)
        if figures:
            left.axhline(
                figures["test_frame_auc"], linestyle=style, color="grey", label=LABELS[kind]
            )
    left.set_xscale("log")
    left.set_xlabel("UBM training FLOPs")
    left.set_ylabel("test frame AUC")
    left.legend(fontsize=7)
    for r in rows:
        figures = r.get(f"{MAPS}/{method}")
        if figures and r.get("ubm_val_bits_per_dim") is not None:
            right.scatter(r["ubm_val_bits_per_dim"], figures["test_frame_auc"])
            right.annotate(
                r["point"], (r["ubm_val_bits_per_dim"], figures["test_frame_auc"]), fontsize=7
            )
    right.set_xlabel("UBM validation bits/dim (real val crops)")
    right.set_ylabel("test frame AUC, LeNet on maps")
    right.invert_xaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
