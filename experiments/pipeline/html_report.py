"""The detect report as one self-contained HTML page.

`render(report, out_dir)` turns report.json's content (detect_report.run) into a page
that needs nothing beside it: images are embedded as base64 PNG data URIs, styles are
inline, there are no scripts and no links to fetch. It shows

- the model, its threshold and the counts (scored, failed, skipped non-media files);
- a table of verdicts: input, kind, frames, score with its 95% bootstrap interval
  over frames, verdict or the error;
- per video the plot of the fake probability of each scored frame over time with the
  threshold line; per input the heatmap figures of at most `MAX_HEATMAPS` frames,
  evenly spaced over its scored frames, embedded at half size (`HEATMAP_SCALE`), to
  keep the page small (about 0.5 MB per input; every frame's full-size figure is in
  `frames/<key>/` beside the report).
"""

from __future__ import annotations

import base64
import html
import os
from typing import Any

import cv2
import numpy as np

MAX_HEATMAPS = 8
HEATMAP_SCALE = 0.5

_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: left; font-size: 14px; }
th { background: #eee; }
.fake { background: #f8c9c4; font-weight: bold; }
.real { background: #c8ecc6; font-weight: bold; }
.error { background: #fde9b8; }
.figure img { max-width: 100%; margin: 4px 0; display: block; }
.note { color: #555; font-size: 13px; }
section { border-top: 1px solid #ccc; margin-top: 20px; }
"""


def evenly_spaced(n: int, k: int = MAX_HEATMAPS) -> list[int]:
    """At most k distinct indices in [0, n), evenly spaced, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.round(np.linspace(0, n - 1, k))})


def data_uri(path: str, scale: float = 1.0) -> str | None:
    """The PNG file at `path` as a data URI, resized by `scale`; None where missing."""
    if not path or not os.path.exists(path):
        return None
    if scale == 1.0:
        with open(path, "rb") as f:
            png = f.read()
    else:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            return None
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _row(entry: dict[str, Any]) -> str:
    esc = html.escape
    if entry.get("error"):
        verdict = f'<td class="error">error: {esc(entry["error"])}</td>'
        score = "<td></td><td></td>"
    else:
        verdict = f'<td class="{entry["verdict"]}">{entry["verdict"]}</td>'
        score = (
            f"<td>{_fmt(entry['score'])}</td><td>[{_fmt(entry['low'])}, {_fmt(entry['high'])}]</td>"
        )
    return (
        f"<tr><td>{esc(entry['path'])}</td><td>{esc(str(entry.get('kind') or '?'))}</td>"
        f"<td>{len(entry.get('frames') or [])}</td>{score}{verdict}</tr>"
    )


def _section(entry: dict[str, Any], out_dir: str) -> str:
    esc = html.escape
    parts = [f"<section><h2>{esc(entry['path'])}</h2>"]
    if entry.get("error"):
        parts.append(f'<p class="error">Not scored: {esc(entry["error"])}</p></section>')
        return "".join(parts)
    parts.append(
        f'<p>Verdict <span class="{entry["verdict"]}">{entry["verdict"]}</span>: score '
        f"{_fmt(entry['score'])} (95% interval {_fmt(entry['low'])}..{_fmt(entry['high'])}) "
        f"over {len(entry['frames'])} frame(s).</p>"
    )
    if entry.get("plot"):
        uri = data_uri(os.path.join(out_dir, entry["plot"]))
        if uri:
            parts.append(f'<div class="figure"><img alt="score over time" src="{uri}"></div>')
    frames = entry["frames"]
    shown = evenly_spaced(len(frames))
    if len(shown) < len(frames):
        parts.append(
            f'<p class="note">Heatmaps of {len(shown)} of {len(frames)} frames, evenly spaced; '
            f"all are in {esc(entry['frames_dir'])}/.</p>"
        )
    for i in shown:
        frame = frames[i]
        path = os.path.join(out_dir, entry["frames_dir"], f"{frame['frame']}.png")
        uri = data_uri(path, HEATMAP_SCALE)
        if uri:
            parts.append(
                f'<div class="figure"><img alt="frame {frame["frame"]}" src="{uri}"></div>'
            )
    if entry.get("video"):
        parts.append(f'<p class="note">Overlay video: {esc(entry["video"])}</p>')
    parts.append("</section>")
    return "".join(parts)


def render(report: dict[str, Any], out_dir: str) -> str:
    """The HTML page of `report` (report.json's content); PNGs read from `out_dir`."""
    esc = html.escape
    counts = report["counts"]
    skipped = (
        f", {counts['skipped']} non-media file(s) inside folders skipped"
        if counts["skipped"]
        else ""
    )
    header = (
        f"<h1>Deepfake detection report</h1>"
        f"<p>Model: {esc(str(report['model']['path']))}; threshold {report['threshold']:.3f} "
        f"(score = mean fake probability of a video's frames; fake at or above the "
        f"threshold).</p>"
        f"<p>{counts['scored']} input(s) scored, {counts['failed']} failed{skipped}.</p>"
        f'<p class="note">Heatmaps: the per-pixel log-likelihood of the face under the '
        f"model of real faces; {esc(report['heatmap']['colormap'])}; range "
        f"{esc(report['heatmap']['range'])}. Panels: the frame with the face box (red: "
        f"frame scored fake, green: real) and the heatmap, the 64x64 crop, the map "
        f"alone.</p>"
    )
    table = (
        "<table><tr><th>input</th><th>kind</th><th>frames</th><th>score</th>"
        "<th>95% interval</th><th>verdict</th></tr>"
        + "".join(_row(e) for e in report["inputs"])
        + "</table>"
    )
    sections = "".join(_section(e, out_dir) for e in report["inputs"])
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Detection report</title>'
        f"<style>{_STYLE}</style></head><body>{header}{table}{sections}</body></html>\n"
    )
