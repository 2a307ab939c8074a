"""The atlas of a tiny real study: every link and image of every page resolves on disk, the
grid pages, a feature page shows what the database holds, the report links into the atlas,
and in headless Chromium every image of the pages loads."""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

from runner import results
from runner.atlas.pages import number
from runner.present import atlas_links as links
from tests.atlas.conftest import TinyRun
from tests.helpers import load_bench

pytestmark = pytest.mark.slow

HAS_CHROMIUM = any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))


class _Refs(HTMLParser):
    """Every href and src of a page, and the rel=prev/next links."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.rel: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("href", "src"):
            if found.get(name):
                self.refs.append(found[name])
        if tag == "a" and found.get("rel") and found.get("href"):
            self.rel[found["rel"]] = found["href"]


def refs(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def target(page: Path, ref: str) -> Path:
    return (page.parent / unquote(urlsplit(ref).path)).resolve()


def test_every_link_and_image_of_every_page_exists(tiny_atlas: Path) -> None:
    pages = sorted(tiny_atlas.rglob("*.html"))
    checked = 0
    for page in pages:
        for ref in refs(page).refs:
            assert "://" not in ref and not ref.startswith("/"), (page, ref)  # file://, relative
            assert target(page, ref).is_file(), f"{page.relative_to(tiny_atlas)} -> {ref}"
            checked += 1
    # index + 2 model pages + grids (vit: layer 0 of 3 features = 2 pages, layer 1 of 5 = 3;
    # vit_b: layer 1 of 5 = 3) + 8 + 5 feature pages
    assert len(pages) == 1 + 2 + (2 + 3 + 3) + (3 + 5 + 5)
    assert checked > 100


def test_the_grid_pages(tiny_atlas: Path) -> None:
    first = tiny_atlas / links.layer_page("vit", "mlp", 1)
    pages = [first]
    while "next" in refs(pages[-1]).rel:
        pages.append(target(pages[-1], refs(pages[-1]).rel["next"]))
    assert [p.name for p in pages] == ["index.html", "page-2.html", "page-3.html"]
    assert target(pages[2], refs(pages[2]).rel["prev"]) == pages[1].resolve()
    tiles = [[r for r in refs(p).refs if r.startswith("f0") and r.endswith(".html")]
             for p in pages]
    assert tiles == [["f00000.html", "f00001.html"], ["f00002.html", "f00003.html"],
                     ["f00004.html"]]
    html = first.read_text()
    assert html.count('loading="lazy"') == 2  # thumbnails load when scrolled to


def test_a_feature_page_shows_the_database(tiny_run: TinyRun, tiny_atlas: Path) -> None:
    path = links.feature_page("vit", "mlp", 1, 0)
    page = tiny_atlas / path
    html = page.read_text()
    metrics = results.results(f"sqlite:///{tiny_run.db}", name="activation")
    optimized = metrics[(metrics["layer"] == 1) & (metrics["feature"] == 0)
                        & metrics["variant"].isna()]
    assert len(optimized) == 2  # one per TV weight
    for value in optimized["value"]:
        assert f"activation {number(value)}" in html
    assert "Variants differ in tv_weight" in html and "tv_weight=0.01" in html
    assert "topk on shapes_val" in html and "<svg" in html  # ranking and spatial drop
    # another kind's numbers of the feature (concepts), each with its value and its task
    purity = results.results(f"sqlite:///{tiny_run.db}", name="purity")
    mine = purity[(purity["layer"] == 1) & (purity["feature"] == 0) & purity["variant"].isna()]
    assert len(mine) == 1
    assert (f'<td>purity</td><td class="num">{number(mine["value"].iloc[0])}</td>'
            "<td>concepts on shapes_val") in html
    parsed = refs(page)
    other = links.relative(path, links.feature_page("vit_b", "mlp", 1, 0))
    assert other in parsed.refs  # the same feature in the other model
    assert parsed.rel == {"next": "f00001.html"}
    # the strips: 2 optimized images, 3 top images + 3 overlays, cells of the 32-px input
    strips = page.parent / "img"
    with Image.open(strips / "f00000.webp") as opt, Image.open(strips / "f00000-top.webp") as top:
        assert (opt.size, top.size) == ((2 * 32, 32), (6 * 32, 32))
    # a layer-0 feature: optimized only, no other model has its layer
    html0 = (tiny_atlas / links.feature_page("vit", "mlp", 0, 2)).read_text()
    assert "Most activating images" not in html0 and "same feature in" not in html0


def test_the_report_links_into_the_default_atlas(tiny_run: TinyRun, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_run.cli("report", str(tiny_run.study))
    report = tmp_path / "reports" / "tiny-atlas" / "index.html"
    assert "feature atlas" not in report.read_text()  # no atlas yet
    tiny_run.cli("atlas", str(tiny_run.study))
    assert (tmp_path / links.DEFAULT_ROOT / "tiny-atlas" / links.INDEX).is_file()
    tiny_run.cli("report", str(tiny_run.study))
    html = report.read_text()
    assert 'href="../../atlas/tiny-atlas/index.html"' in html
    assert target(report, "../../atlas/tiny-atlas/index.html").is_file()


@pytest.fixture(scope="module")
def bench():
    return load_bench("report_html")


@pytest.mark.skipif(not HAS_CHROMIUM and not os.environ.get("CI"),
                    reason="needs headless Chromium (apt-get install chromium)")
def test_every_image_loads_in_chromium(bench, tiny_atlas: Path) -> None:
    pages = [links.layer_page("vit", "mlp", 1), links.grid_page("vit", "mlp", 1, 3),
             links.feature_page("vit", "mlp", 1, 0), links.feature_page("vit_b", "mlp", 1, 4)]
    counts = [bench.image_check((tiny_atlas / p).resolve().as_uri()) for p in pages]
    # 2 and 1 thumbnails; 2 optimized + 3 top images + 3 overlays; 3 + 3
    assert counts == [(2, 2, ""), (1, 1, ""), (8, 8, ""), (6, 6, "")]
    assert bench.image_check((tiny_atlas / links.INDEX).resolve().as_uri()) == (0, 0, "")
