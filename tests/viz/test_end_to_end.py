"""End to end on the real slides with the built-in ``handcrafted`` encoder.

``extract`` (coarse 2 µm/px, 56 px tiles) → copies of the stores under new slide ids (enough bags
for patient folds; labels are made up) → ``train`` → ``predict --heatmaps`` → ``slide-encode``
(PANTHER with prototype maps, mean) → linear probes. The assertions are about outputs being
complete and consistent, never about performance. The JPEG 2000 slide is left out: it alone
would double the extraction time, and the tiling tests cover it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.cli import heatmap as _heatmap  # noqa: F401  (registers `heatmap` until cli/__init__ does)
from slidestream.mil.labels import read_labels
from slidestream.slide_encoders.panther import embedding_dim
from slidestream.slide_encoders.probe import probe_cohort, read_cohort_table
from slidestream.store import SlideStore
from slidestream.viz.heatmap import store_heatmap
from tests.conftest import CMU, KIDNEY, PEN

SLIDES = {CMU: None, PEN: 0.5, KIDNEY: 2.0}  # assumed mpp where the file has none
COPIES = 4  # per slide: 12 bags, one per made-up patient
N_BAGS = len(SLIDES) * COPIES
ENCODER = "handcrafted"
DIM = 35

pytestmark = pytest.mark.slow


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    slide_list = root / "slides.csv"
    slide_list.write_text("path,mpp\n" + "".join(f"{p},{m or ''}\n" for p, m in SLIDES.items()))
    extracted = root / "extracted"
    result = run(
        "extract",
        slide_list,
        "--out",
        extracted,
        "--encoder",
        ENCODER,
        "--mpp",
        2.0,
        "--tile-size",
        56,
        "--workers",
        1,
    )
    assert result.exit_code == 0, result.output
    stores = root / "stores"
    rows = []
    for slide in SLIDES:
        for c in range(COPIES):
            sid = f"{slide.stem}-{c}"
            shutil.copytree(extracted / f"{slide.stem}.zarr", stores / f"{sid}.zarr")
            rows.append({"slide_id": sid, "patient_id": f"patient-{len(rows)}", "label": c % 2})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return {"root": root, "stores": stores, "labels": root / "labels.csv"}


@pytest.fixture(scope="module")
def predicted(cohort) -> dict[str, Path]:
    root = cohort["root"]
    result = run(
        "train",
        "--labels",
        cohort["labels"],
        "--stores",
        cohort["stores"],
        "--encoder",
        ENCODER,
        "--out",
        root / "RUN",
        "--folds",
        2,
        "--epochs",
        2,
        "--seed",
        0,
        "--val-fraction",
        0.5,
    )
    assert result.exit_code == 0, result.output
    result = run(
        "predict",
        "--run",
        root / "RUN",
        "--stores",
        cohort["stores"],
        "--encoder",
        ENCODER,
        "--out",
        root / "predictions.csv",
        "--heatmaps",
        root / "maps",
    )
    assert result.exit_code == 0, result.output
    return {
        **cohort,
        "run": root / "RUN",
        "maps": root / "maps",
        "predictions": root / "predictions.csv",
    }


def _n_rows(store: SlideStore) -> int:
    return int(store.node_attrs(f"features/{ENCODER}")["n_rows"])


def _check_picture(path: Path) -> None:
    """A real picture (a slide thumbnail with colours over it), not a blank or flat canvas."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.uint32)
    assert max(pixels.shape[:2]) > 500 and pixels.std() > 10, path.name
    colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    assert len(colours) > 1000, path.name


def test_train_writes_a_complete_run_folder(predicted):
    run_dir = predicted["run"]
    for k in (0, 1):
        assert (run_dir / f"fold_{k}" / "model.pt").stat().st_size > 0
        assert len(pd.read_csv(run_dir / f"fold_{k}" / "history.csv")) >= 1
    assert json.loads((run_dir / "config.json").read_text())["encoder"] == ENCODER
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and metrics["n_slides"] == metrics["n_patients"] == N_BAGS
    assert {"auroc_macro", "balanced_accuracy"} <= set(metrics["summary"])
    assert len(pd.read_csv(run_dir / "oof_predictions.csv")) == N_BAGS
    assert (run_dir / "summary.md").read_text().startswith("# MIL cross-validation")


def test_predict_stores_scores_and_draws_heatmaps(predicted):
    preds = pd.read_csv(predicted["predictions"])
    assert len(preds) == N_BAGS and preds["n_models"].eq(2).all()
    for path in sorted(predicted["stores"].glob("*.zarr")):
        store = SlideStore.open(path)
        values, attrs = store.read_tile_scores("attention")
        assert values.shape == (_n_rows(store),) and np.isfinite(values).all()
        assert attrs["encoder"] == ENCODER and attrs["model"] == "abmil"
        _check_picture(predicted["maps"] / f"{store.slide_id}.attention.png")
        fc = json.loads((predicted["maps"] / f"{store.slide_id}.attention.geojson").read_text())
        assert len(fc["features"]) == _n_rows(store)
        props = fc["features"][0]["properties"]
        assert props["objectType"] == "detection" and set(props["measurements"]) == {"attention"}


@pytest.mark.parametrize("slide", list(SLIDES), ids=lambda p: p.name)
def test_heatmap_pixels_lie_on_tissue(predicted, slide):
    store = SlideStore.open(predicted["stores"] / f"{slide.stem}-0.zarr")
    heatmap = store_heatmap(store, "attention", max_size=512)
    assert heatmap.background == "thumbnail" and heatmap.covered.any()
    h, w = heatmap.covered.shape
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    sx, sy = heatmap.scale
    for feature in store.read_tissue_geojson()["features"]:
        geometry = feature["geometry"]
        polygons = (
            geometry["coordinates"]
            if geometry["type"] == "MultiPolygon"
            else [geometry["coordinates"]]
        )
        for rings in polygons:
            for i, ring in enumerate(rings):
                draw.polygon([(x * sx, y * sy) for x, y in ring], fill=0 if i else 1)
    tissue = np.asarray(mask, bool)
    on_tissue = (heatmap.covered & tissue).sum() / heatmap.covered.sum()
    assert on_tissue > 0.5, f"only {on_tissue:.0%} of the heatmap lies on tissue"
    # the most attended tile is drawn in the warm end of the colour map
    values, _ = store.read_tile_scores("attention")
    x, y = (
        store.read_tiles().coords[int(np.argmax(values))]
        + np.array(store.read_tiles().attrs["level0_size"]) // 2
    )
    r, _, b = np.asarray(heatmap.image)[int(y * sy), int(x * sx)].astype(int)
    assert r > b


def test_slide_embeddings_prototype_maps_and_probes(predicted):
    root, stores = predicted["root"], predicted["stores"]
    result = run(
        "slide-encode",
        "--method",
        "panther",
        "--stores",
        stores,
        "--encoder",
        ENCODER,
        "--fit",
        "--prototypes",
        root / "protos.npz",
        "--k",
        4,
        "--samples-per-prototype",
        100,
        "--table",
        root / "panther.parquet",
        "--maps",
        root / "pmaps",
    )
    assert result.exit_code == 0, result.output
    result = run(
        "slide-encode",
        "--method",
        "mean",
        "--stores",
        stores,
        "--encoder",
        ENCODER,
        "--table",
        root / "mean.parquet",
    )
    assert result.exit_code == 0, result.output
    for method, dim in (("panther", embedding_dim(4, DIM)), ("mean", DIM)):
        table = read_cohort_table(root / f"{method}.parquet")
        assert (
            len(table) == N_BAGS and table["slide_id"].is_unique and (table["status"] == "ok").all()
        )
        assert {len(e) for e in table["embedding"]} == {dim}
    for path in sorted(stores.glob("*.zarr")):
        store = SlideStore.open(path)
        for method in ("panther", "mean"):
            vector, attrs = store.read_slide_embedding(method)
            assert attrs["encoder"] == ENCODER and np.isfinite(vector).all()
        ids, _ = store.read_tile_scores("panther_prototype")
        assert ids.shape == (_n_rows(store),) and ids.max() < 4
        _check_picture(root / "pmaps" / f"{store.slide_id}.panther_prototype.png")
    labels = read_labels(predicted["labels"], "classification")
    probe = probe_cohort(read_cohort_table(root / "mean.parquet"), labels, n_folds=2, seed=0)
    assert len(probe.per_fold) == 2 and np.isfinite(probe.per_fold["balanced_accuracy"]).all()
    result = run(
        "probe",
        "--table",
        root / "panther.parquet",
        "--labels",
        predicted["labels"],
        "--folds-from",
        predicted["run"],
        "--out",
        root / "probe.csv",
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(root / "probe.csv")) == 2
