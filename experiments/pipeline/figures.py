"""Figures 3 and 4 of the paper, drawn from the saved likelihood maps only.

Khodabakhsh & Busch (BIOSIG 2020):
- Fig. 3: histograms of the image log-likelihood under the UBM for pristine faces
  and for each manipulation method, on the development (val) split. We draw one panel
  per method, pristine against that method, on shared bins.
- Fig. 4: example faces and their per-pixel log-likelihood maps, one column per
  source (pristine and each method), red where the likelihood is low; one colour
  scale and a colour bar for all maps. Where possible the columns show one target
  identity: its original video `a` and the fakes `a_*` made on it, at one frame.
- Not in the paper: the test ROC curves of the known-attack detectors, one panel per
  method: the LeNet on the maps beside the same LeNet on the pixels (and on both), and
  the image log-likelihood as a score; the question they answer is whether the maps
  beat the pixels (`classifier.inputs`).

The methods are those found in the maps (`classifier.data.find_methods`). Reads
`likelihoods/<split>/<source>/*.tfrecord` of a work directory; writes PNGs to its
`results/`. Figures are drawn with matplotlib's object API (Agg canvas, no
display, no global pyplot state).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from classifier import data as data_lib
from classifier import metrics
from classifier.config import INPUT_KINDS, KNOWN
from classifier.inputs import LABELS
from data_prep import likelihood_records
from data_prep.files import atomic_path, check_writable
from data_prep.methods import ORIGINAL, abbreviation
from experiments.pipeline import detection, loglik_baseline
from experiments.pipeline.workdir import SHARD_SUFFIX, Workdir

FIG3 = "fig3_loglik_histograms.png"
FIG4 = "fig4_likelihood_maps.png"
ROC = "roc_known.png"
SPLIT_PREFERENCE = ("val", "test", "train")  # the paper's figures use dev data
MAP_COLORMAP = "RdYlBu"  # low (unlikely) = red, high = blue


def _save(fig: Figure, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def _shards(likelihoods_dir: str, split: str, source: str) -> list[str]:
    folder = os.path.join(likelihoods_dir, split, source)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(SHARD_SUFFIX))


def pick_split(likelihoods_dir: str) -> str:
    """The first split of SPLIT_PREFERENCE that has original faces.

    Raises:
      FileNotFoundError: no split holds likelihood maps of original faces.
    """
    for split in SPLIT_PREFERENCE:
        if _shards(likelihoods_dir, split, ORIGINAL):
            return split
    raise FileNotFoundError(
        f"No likelihood maps of original faces under {likelihoods_dir!r}: run "
        "extract_likelihoods first, or check --workdir."
    )


def image_logliks(
    likelihoods_dir: str, split: str, methods: Sequence[str]
) -> dict[str, np.ndarray]:
    """{source: image log-likelihoods float32 [N]} of one split (sources with data),
    `original` first, then `methods` in their order."""
    values = {}
    for source in (ORIGINAL, *methods):
        shards = _shards(likelihoods_dir, split, source)
        if not shards:
            continue
        dataset = likelihood_records.read_records(shards, likelihood_records.IMAGE_LOGLIK_FIELDS)
        parts = [b["image_loglik"].numpy() for b in dataset.batch(4096)]
        values[source] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return values


def plot_loglik_histograms(values: dict[str, np.ndarray], split: str, path: str) -> None:
    """Fig. 3: pristine vs each method's image log-likelihood, one panel per method.

    `values` as `image_logliks` returns it; panels follow its order.
    """
    methods = [m for m in values if m != ORIGINAL and len(values[m])]
    pristine = values.get(ORIGINAL, np.zeros(0))
    everything = np.concatenate([pristine, *(values[m] for m in methods)])
    bins = np.histogram_bin_edges(everything, bins=40) if everything.size else 10
    panels = max(len(methods), 1)
    fig = Figure(figsize=(3.6 * panels, 3.2))
    axes = fig.subplots(1, panels, squeeze=False)
    for ax, method in zip(axes[0], methods or [None], strict=True):
        ax.hist(pristine, bins=bins, density=True, alpha=0.55, color="tab:blue", label="pristine")
        if method is not None:
            ax.hist(
                values[method],
                bins=bins,
                density=True,
                alpha=0.55,
                color="tab:red",
                label=abbreviation(method),
            )
            ax.set_title(f"pristine vs {abbreviation(method)}")
        ax.set_xlabel("image log-likelihood (nats)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density")
    fig.suptitle(f"Image log-likelihood under the UBM ({split} split)")
    fig.tight_layout()
    _save(fig, path)


def _read_shard(path: str) -> list[likelihood_records.LikelihoodExample]:
    return list(likelihood_records.read_examples(path))


def pick_examples(
    likelihoods_dir: str, split: str, methods: Sequence[str]
) -> dict[str, likelihood_records.LikelihoodExample]:
    """One example per source (`original`, then `methods` with data in `split`), from
    one target identity and frame where possible."""
    videos = {
        source: [
            os.path.basename(p)[: -len(SHARD_SUFFIX)]
            for p in _shards(likelihoods_dir, split, source)
        ]
        for source in (ORIGINAL, *methods)
    }
    present = [m for m in methods if videos[m]]
    # A target identity with a fake in every method present, if there is one.
    target = next(
        (
            v
            for v in videos[ORIGINAL]
            if all(any(f.split("_")[0] == v for f in videos[m]) for m in present)
        ),
        videos[ORIGINAL][0] if videos[ORIGINAL] else None,
    )
    examples = {}
    frame = None
    for source in (ORIGINAL, *present):
        names = videos[source]
        if source == ORIGINAL:
            name = target
        else:
            name = next((f for f in names if f.split("_")[0] == target), names[0])
        if name is None:
            continue
        shard = _read_shard(os.path.join(likelihoods_dir, split, source, name + SHARD_SUFFIX))
        if not shard:
            continue
        if frame is None:
            frame = shard[len(shard) // 2].face.frame
        examples[source] = min(shard, key=lambda e: abs(e.face.frame - frame))
    return examples


def plot_likelihood_maps(
    examples: dict[str, likelihood_records.LikelihoodExample], split: str, path: str
) -> None:
    """Fig. 4: faces (top row) and likelihood maps (bottom row) with one colour bar."""
    sources = list(examples)
    maps = np.stack([examples[s].loglik_map for s in sources])
    vmin, vmax = np.percentile(maps, [1, 99])
    fig = Figure(figsize=(2.3 * len(sources) + 1.0, 5.0))
    axes = fig.subplots(2, len(sources), squeeze=False)
    image = None
    for j, source in enumerate(sources):
        ex = examples[source]
        title = "pristine" if source == ORIGINAL else abbreviation(source)
        axes[0][j].imshow(ex.face.image)
        axes[0][j].set_title(f"{title}\n{ex.face.video} #{ex.face.frame}", fontsize=9)
        image = axes[1][j].imshow(ex.loglik_map, cmap=MAP_COLORMAP, vmin=vmin, vmax=vmax)
        axes[1][j].set_xlabel(f"{ex.image_loglik:.0f} nats", fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Faces and per-pixel log-likelihood maps ({split} split; red = unlikely)")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    bar_axes = fig.add_axes((0.91, 0.08, 0.02, 0.38))
    fig.colorbar(image, cax=bar_axes, label="log p(x_i | x_<i) (nats)")
    _save(fig, path)


def known_roc_curves(
    workdir: Workdir, methods: Sequence[str]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]]:
    """{method: {row label: (false-positive rates, true-positive rates, AUC)}} on the
    test split: every known-attack detector's predictions.csv (the maps and each
    baseline input that ran) and the image log-likelihood score."""
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]] = {}
    for method in methods:
        found = {}
        for kind in INPUT_KINDS:
            path = os.path.join(workdir.protocol(KNOWN, kind), method, detection.PREDICTIONS_FILE)
            if not os.path.exists(path):
                continue
            rows = pd.read_csv(path)
            test = rows[rows["split"] == "test"]
            if test["label"].nunique() == 2:
                found[LABELS[kind]] = _roc(test["label"].to_numpy(), test["score"].to_numpy())
        frames = [
            loglik_baseline.read_folder(workdir.likelihoods, "test", s) for s in (ORIGINAL, method)
        ]
        labels = np.concatenate([f.labels for f in frames])
        if len(np.unique(labels)) == 2:
            scores = loglik_baseline.loglik_score(np.concatenate([f.image_loglik for f in frames]))
            found[loglik_baseline.SCORE_LABELS["loglik"]] = _roc(labels, scores)
        if found:
            curves[method] = found
    return curves


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr, metrics.auc(labels, scores)


def plot_roc_curves(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]], path: str
) -> None:
    """One panel per method: each detector's test ROC curve, its AUC in the legend."""
    fig = Figure(figsize=(4.2 * max(1, len(curves)), 4.2))
    panels = fig.subplots(1, max(1, len(curves)), squeeze=False)[0]
    for ax, (method, found) in zip(panels, curves.items(), strict=False):
        for label, (fpr, tpr, auc) in found.items():
            ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
        ax.set_title(f"known attack: {abbreviation(method)} (test)")
        ax.set_xlabel("false-positive rate (real called fake)")
        ax.set_ylabel("true-positive rate")
        ax.legend(fontsize=6, loc="lower right")
    _save(fig, path)


def make_figures(workdir: Workdir) -> list[str]:
    """Draws Fig. 3, Fig. 4 and the known-attack ROC curves (where the detectors ran)
    into `results/`; returns the paths.

    Raises:
      FileNotFoundError: no likelihood maps of original faces in the workdir.
      PermissionError: `results/` cannot be written.
    """
    likelihoods_dir = workdir.likelihoods
    split = pick_split(likelihoods_dir)
    methods = data_lib.find_methods(likelihoods_dir)
    check_writable(workdir.results)
    fig3 = os.path.join(workdir.results, FIG3)
    plot_loglik_histograms(image_logliks(likelihoods_dir, split, methods), split, fig3)
    fig4 = os.path.join(workdir.results, FIG4)
    plot_likelihood_maps(pick_examples(likelihoods_dir, split, methods), split, fig4)
    paths = [fig3, fig4]
    curves = known_roc_curves(workdir, methods)
    if curves:
        paths.append(os.path.join(workdir.results, ROC))
        plot_roc_curves(curves, paths[-1])
    return paths
