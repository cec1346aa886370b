"""``slidestream report`` on a real run over the shared slides, opened in a real headless Chromium.

The run mixes what a report must show: a slide with its own mpp (CMU), slides with an assumed
mpp from the slide list (pen marks, TCGA), a slide that fails for want of an mpp (kidney), a file
that does not exist, features for two slides, tile scores (a heatmap and a prototype map) and a
picture the run wrote itself.
"""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import slidestream.cli.report  # noqa: F401  (registers `slidestream report`)
from slidestream.cli import app
from slidestream.store import SlideStore
from slidestream.viz.report import write_report
from tests.conftest import CMU, KIDNEY, PEN, TCGA_JP2K
from tests.report.chromium import Chromium, find_chromium

pytestmark = pytest.mark.slow

MISSING = "no-such-slide.svs"
TILE_ARGS = ["--mpp", "2.0", "--tile-size", "56", "--select", "mosaic", "--fraction", "0.2"]
EXPECTED_IDS = {CMU.stem, PEN.stem, TCGA_JP2K.stem, KIDNEY.stem, Path(MISSING).stem}
FAILED_IDS = {KIDNEY.stem, Path(MISSING).stem}


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("report")
    out = work / "out"
    slides = work / "slides.csv"
    slides.write_text(f"path,mpp\n{CMU},\n{PEN},0.5\n{TCGA_JP2K},0.5\n{KIDNEY},\n")
    result = run("tile", slides, work / MISSING, "--out", out, *TILE_ARGS)
    assert result.exit_code == 1, result.output  # kidney (no mpp) and the missing file fail
    two = work / "two.csv"
    two.write_text(f"path,mpp\n{CMU},\n{PEN},0.5\n")
    result = run("extract", two, "--out", out, "--encoder", "handcrafted", "--workers", "2")
    assert result.exit_code == 0, result.output
    # What MIL heatmaps and PANTHER prototype maps leave behind: per-tile values in the store.
    store = SlideStore.open(out / f"{CMU.stem}.zarr")
    n = int(store.node_attrs("features/handcrafted")["n_rows"])
    store.write_tile_scores("attention", np.linspace(0, 1, n, dtype=np.float32) ** 2,
                            {"encoder": "handcrafted", "kind": "attention", "description": "synthetic attention"})
    store.write_tile_scores("prototypes", np.arange(len(store.read_tiles())) % 4, {"kind": "categorical", "k": 4})
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out / f"{CMU.stem}.custom-map.png")
    result = run("report", out)
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------------- files
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag in ("a", "link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))


def referenced(html: str) -> _Refs:
    refs = _Refs()
    refs.feed(html)
    return refs


def check_local_images(report_dir: Path, sources: list[str]) -> None:
    assert sources
    for src in sources:
        parsed = urlparse(src)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        else:
            assert not parsed.scheme and not src.startswith(("/", "//")), f"not a relative link: {src}"
            path = report_dir / unquote(src)
        assert path.resolve().is_relative_to(report_dir.resolve()), f"{src} points outside the report folder"
        assert path.is_file(), f"{src} is referenced but {path} does not exist"
        with Image.open(path) as im:
            im.verify()


def test_report_is_self_contained_and_every_image_exists(run_folder):
    report_dir = run_folder / "report"
    html = (report_dir / "index.html").read_text()
    refs = referenced(html)
    check_local_images(report_dir, refs.images)
    for link in refs.links:  # nothing fetched from the network: only anchors, local files, data: URIs
        assert link.startswith(("#", "img/", "data:")), link
    assert not re.search(r"https?://", html), "the page must not reference the network"


def test_report_content(run_folder):
    html = (run_folder / "report" / "index.html").read_text()
    # one section per slide, failures included, with their reasons
    for sid in EXPECTED_IDS:
        assert f'data-slide-id="{sid}"' in html
    assert "no microns-per-pixel" in html and "file does not exist" in html
    assert "2 slides failed" in html
    # key numbers of CMU from its store
    cmu = SlideStore.open(run_folder / f"{CMU.stem}.zarr")
    area = cmu.node_attrs("tissue")["summary"]["tissue_area_mm2"]
    assert f"{area:.4g} mm²" in html
    assert "2,220 × 2,967 px" in html and "openslide.mpp" in html
    # an assumed mpp is called out
    assert "mpp 0.5 µm/px was assumed" in html
    # features per encoder, the score maps and the run's own picture
    assert "Features handcrafted" in html
    for name in ("attention", "prototypes"):
        assert f"tile_scores/{name}" in html
    assert f"{CMU.stem}.custom-map.png" in html
    # configuration and timings
    assert 'id="config"' in html and "min_tissue" in html and "tile_size" in html
    assert "features/handcrafted" in html and "Tiles / s" in html


def test_rewriting_reuses_pictures_and_drops_stale_ones(run_folder):
    img = run_folder / "report" / "img"
    before = {p.name: p.stat().st_mtime_ns for p in img.glob("*.jpg")}
    stale = img / "gone-slide.overview.jpg"
    Image.new("RGB", (4, 4)).save(stale)
    write_report(run_folder)
    after = {p.name: p.stat().st_mtime_ns for p in img.glob("*.jpg")}
    assert after == before, "unchanged slides must not be redrawn"
    assert not stale.exists()


def test_stores_without_manifest_and_a_damaged_store(run_folder, tmp_path):
    """A folder of stores made through the API (no manifest) still gets a report; a broken store is a note."""
    shutil.copytree(run_folder / f"{CMU.stem}.zarr", tmp_path / f"{CMU.stem}.zarr")
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    html = write_report(tmp_path).read_text()
    assert f'data-slide-id="{CMU.stem}"' in html and 'data-slide-id="broken"' in html
    assert "not in manifest.csv" in html and "could not be read" in html
    assert (tmp_path / "report" / "img" / f"{CMU.stem}.overview.jpg").exists()


def test_cli_refuses_a_folder_without_a_run(tmp_path):
    result = run("report", tmp_path)
    assert result.exit_code == 2
    assert "nothing to report" in result.output


# ---------------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        if os.environ.get("SLIDESTREAM_REQUIRE_BROWSER"):
            pytest.fail("SLIDESTREAM_REQUIRE_BROWSER is set but no chromium is on PATH (.ci/run installs it)")
        pytest.skip("no Chromium on PATH (apt-get install chromium, or set SLIDESTREAM_CHROMIUM); "
                    "CI installs it and runs this test")
    with Chromium(exe) as b:
        yield b


def test_report_in_headless_chromium(browser, run_folder, tmp_path):
    page = run_folder / "report" / "index.html"
    browser.load(page.as_uri())
    # Load every picture (lazy ones too) and ask the browser whether each decoded.
    images = browser.evaluate("""Promise.all(Array.from(document.images).map(img => {
        img.loading = 'eager';
        return img.decode().then(() => [img.getAttribute('src'), img.naturalWidth, img.naturalHeight],
                                 () => [img.getAttribute('src'), 0, 0]);
    }))""", await_promise=True)
    assert browser.problems() == [], "the page logged errors"
    assert images and all(w > 0 and h > 0 for _, w, h in images), [s for s, w, _ in images if not w]

    sections = browser.evaluate("Array.from(document.querySelectorAll('article.slide')).map(a => a.dataset.slideId)")
    assert sorted(sections) == sorted(EXPECTED_IDS), "one section per slide"
    failures = browser.evaluate("document.getElementById('failures').innerText")
    assert "no microns-per-pixel" in failures and "file does not exist" in failures
    statuses = browser.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('article.slide'))
        .map(a => [a.dataset.slideId, a.querySelector('header .badge').innerText]))""")
    assert {k for k, v in statuses.items() if v == "failed"} == FAILED_IDS

    # the DOM as the browser built it references only files that exist in the report folder
    dom = browser.evaluate("document.documentElement.outerHTML")
    check_local_images(page.parent, referenced(dom).images)

    # sorting: tiles column, descending puts the largest first and empty cells last
    tiles_col = browser.evaluate("""(() => {
        const heads = Array.from(document.querySelectorAll('#summary-table thead th'));
        const i = heads.findIndex(th => th.innerText.startsWith('Tiles'));
        const button = heads[i].querySelector('button');
        button.click(); button.click();
        return Array.from(document.querySelectorAll('#summary-table tbody tr')).map(r => r.cells[i].dataset.sort);
    })()""")
    numbers = [int(v) for v in tiles_col if v]
    assert numbers == sorted(numbers, reverse=True) and tiles_col[-len(FAILED_IDS):] == ["", ""]
    assert browser.problems() == []

    shot = browser.screenshot(tmp_path / "report.png")
    with Image.open(shot) as im:
        assert im.height > 1000 and len(set(np.asarray(im.convert("L").resize((64, 64))).ravel().tolist())) > 20
    keep = os.environ.get("SLIDESTREAM_REPORT_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(shot.read_bytes())
