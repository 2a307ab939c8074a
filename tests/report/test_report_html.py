"""The HTML report in headless Chromium: every image loads; a screenshot is taken."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.helpers import load_bench

# Skipped without a browser, except under CI (env CI set), where .ci/run installs one.
pytestmark = pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))
    and not os.environ.get("CI"),
    reason="needs headless Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def bench():
    return load_bench("report_html")


def test_every_image_loads_in_chromium(bench, built_report, tmp_path):
    url = built_report.index.resolve().as_uri()
    total, loaded, broken = bench.image_check(url)
    assert (total, loaded, broken) == (7, 7, "")
    shot = bench.screenshot(url, tmp_path / "shot.png", 1280, 2000)
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(np.unique(np.asarray(image.convert("L")))) > 20  # not blank


def test_a_missing_image_is_reported(bench, built_report, tmp_path):
    out = tmp_path / "report"
    shutil.copytree(built_report.index.parent, out)
    (out / "figures" / "isolation_curve.png").unlink()
    total, loaded, broken = bench.image_check((out / "index.html").resolve().as_uri())
    assert (total, loaded, broken) == (7, 6, "figures/isolation_curve.png")
