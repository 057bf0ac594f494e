"""The face stage's `manifest.json`: per-video entries, totals, and the summary log.

The manifest holds the stage's settings, what the dataset adapter found (`ffpp_root`,
`splits_dir`, `methods`, `workers`, `found`, `problems`, `unassigned`), whether the
run is `complete`, the number of `failed_videos` and their `failures` by kind, one
entry per video (`video`,
`method`, `split`, `path`, `shard`, `frames_read`, `faces`, `frames_without_face`,
`frames_declared`, `frames_decoded`, `seconds`, `status`, `error`, and for fakes
`mask_path`, `frames_with_mask`, `frames_without_mask`, `mask_error`; failed ones
`error_kind` and, if refused for size, `rejected_size`; see
`face_stage.finish_video`; entries journaled before a key existed lack it) and
`totals` overall, per split, per method and per split and method (a key an entry
lacks counts 0). It is rebuilt from the progress
journal; the stage writes it (`stage_folder.StageFolder.write_manifest`).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from typing import Any

from absl import logging

from data_prep.face_settings import FaceSettings

OK = "ok"
FAILED = "failed"
_LOGGED_FAILURES = 50  # failed videos named in the log; the manifest has them all


def _zero() -> dict[str, float]:
    return {
        "videos": 0,
        "ok": 0,
        "failed": 0,
        "frames_read": 0,
        "faces": 0,
        "frames_without_face": 0,
        "frames_with_mask": 0,
        "frames_without_mask": 0,
        "seconds": 0.0,
    }


def _add(total: dict[str, float], entry: dict[str, Any]) -> None:
    total["videos"] += 1
    total[entry["status"]] += 1
    for key in ("frames_read", "faces", "frames_without_face", "seconds"):
        total[key] += entry[key]
    for key in ("frames_with_mask", "frames_without_mask"):  # later keys: maybe absent
        total[key] += entry.get(key, 0)


def summarize(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over manifest entries: overall, per split, per method, per split and method."""
    totals: dict[str, Any] = {
        "all": _zero(),
        "by_split": collections.defaultdict(_zero),
        "by_method": collections.defaultdict(_zero),
        "by_split_method": collections.defaultdict(lambda: collections.defaultdict(_zero)),
    }
    for e in entries:
        _add(totals["all"], e)
        _add(totals["by_split"][e["split"]], e)
        _add(totals["by_method"][e["method"]], e)
        _add(totals["by_split_method"][e["split"]][e["method"]], e)
    return json.loads(json.dumps(totals))  # defaultdicts to plain dicts


def build_manifest(
    settings: FaceSettings,
    run: dict[str, Any],
    entries: dict[str, dict[str, Any]],
    complete: bool,
) -> dict[str, Any]:
    """The manifest of a run: `run` holds what the adapter found (see module docstring)."""
    videos = sorted(entries.values(), key=lambda e: (e["method"], e["video"]))
    failed = [e for e in videos if e["status"] == FAILED]
    return {
        "stage": "faces",
        "settings": settings.to_json(),
        **run,
        "complete": complete,
        "failed_videos": len(failed),
        "failures": failure_counts(failed),
        "videos": videos,
        "totals": summarize(videos),
    }


def failure_counts(failed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Failed entries per `error_kind` (unreadable, truncated, too_small, no_face, ...)
    and, where images were refused for their size, the smallest one [height, width]."""
    by_kind = collections.Counter(e.get("error_kind", "unreadable") for e in failed)
    counts: dict[str, Any] = {"by_kind": dict(sorted(by_kind.items()))}
    sizes = [e["rejected_size"] for e in failed if e.get("rejected_size")]
    if sizes:
        counts["smallest_rejected"] = min(sizes, key=lambda hw: (min(hw), hw))
    return counts


def log_summary(manifest: dict[str, Any]) -> None:
    """Logs the totals per split and source, overall speed, and every failed video."""
    logging.info("Face crops per split and source (ok/failed videos, faces, frames w/o face):")
    for split, methods in sorted(manifest["totals"]["by_split_method"].items()):
        for method, t in sorted(methods.items()):
            logging.info(
                "  %-5s %-15s %4d ok %3d failed %8d faces %6d without face",
                split,
                method,
                t["ok"],
                t["failed"],
                t["faces"],
                t["frames_without_face"],
            )
    t = manifest["totals"]["all"]
    fps = t["frames_read"] / t["seconds"] if t["seconds"] else 0.0
    logging.info(
        "All: %d videos (%d failed), %d faces from %d frames, %.1f frames/s per worker.",
        t["videos"],
        t["failed"],
        t["faces"],
        t["frames_read"],
        fps,
    )
    failures = manifest.get("failures", {})
    if failures.get("by_kind"):
        logging.warning(
            "Left out: %s%s.",
            ", ".join(f"{n} {kind}" for kind, n in failures["by_kind"].items()),
            f" (smallest image refused: {failures['smallest_rejected'][1]}x"
            f"{failures['smallest_rejected'][0]})"
            if failures.get("smallest_rejected")
            else "",
        )
    failed = [e for e in manifest["videos"] if e["status"] == FAILED]
    for e in failed[:_LOGGED_FAILURES]:
        logging.error("Failed: %s/%s: %s", e["method"], e["video"], e["error"])
    if len(failed) > _LOGGED_FAILURES:
        logging.error(
            "... and %d more failed (manifest.json lists every one).",
            len(failed) - _LOGGED_FAILURES,
        )
