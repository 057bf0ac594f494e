"""The detect report's HTML page: self-contained, and it renders in a headless browser.

The browser test screenshots report.html with headless Chromium and checks that the
picture is not blank and shows the heatmap colours; it skips where no Chromium is
installed (`.ci/run` installs it from Debian's packages).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from test_detect import StubDetector, kind_of, write_video

from experiments.pipeline import detect_report, html_report
from experiments.pipeline.detect_inputs import expand_inputs


@pytest.fixture
def report_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(str(folder / "real.avi"))
    write_video(str(folder / "fake.avi"))
    (folder / "broken.avi").write_bytes(b"\x00" * 64)
    out = tmp_path / "out"
    detect_report.run(StubDetector(), expand_inputs([str(folder)], kind_of), str(out), 4, False)
    return out


def test_page_is_self_contained(report_dir: pathlib.Path) -> None:
    page = (report_dir / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert "href=" not in page
    # Verdicts table: each input once, the failed one with its error.
    assert page.count('<td class="fake">fake</td>') == 1
    assert page.count('<td class="real">real</td>') == 1
    assert "error: Video" in page


def test_evenly_spaced() -> None:
    assert html_report.evenly_spaced(3) == [0, 1, 2]
    assert html_report.evenly_spaced(100, 8)[0] == 0
    assert html_report.evenly_spaced(100, 8)[-1] == 99
    assert len(html_report.evenly_spaced(100, 8)) == 8


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_page_renders_in_headless_browser(report_dir: pathlib.Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium or chromium-browser on PATH (.ci/run installs it)")
    shot = report_dir / "shot.png"
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        "--hide-scrollbars",
        (report_dir / "report.html").resolve().as_uri(),
    ]
    env = {**os.environ, "HOME": str(report_dir)}  # Chromium writes a profile there
    subprocess.run(command, capture_output=True, timeout=120, env=env, check=False)
    image = cv2.imread(str(shot))
    assert image is not None, "Chromium wrote no screenshot"
    assert image.shape[:2] == (1600, 1200)
    assert image.std() > 20  # not a blank page
    colours = np.unique((image // 32).reshape(-1, 3), axis=0)
    assert len(colours) > 20  # text, table colours, plot and heatmaps
    b, g, r = (image[..., i].astype(int) for i in range(3))
    # The JET colormap's ends: dark red (unlikely) and dark blue (likely).
    red = (r > 100) & (g < 40) & (b < 40)
    blue = (b > 100) & (r < 40) & (g < 40)
    assert red.sum() > 1000, "no heatmap red (unlikely pixels) on the page"
    assert blue.sum() > 1000, "no heatmap blue (likely pixels) on the page"
