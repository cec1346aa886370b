"""One entry point for every tissue method: classical, deep (HEST, GrandQC), combined, artifacts.

Every method ends on the same working image as the classical detector (2-16 um/px, from the
slide's size) and goes through the same mask clean-up and polygon tracing, so the result type,
the GeoJSON and the store node are the same whatever the method; only the provenance differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon

from slidestream.errors import ConfigError
from slidestream.io import Slide
from slidestream.tissue.detect import TissueResult, detect_tissue, result_from_mask, working_mpp
from slidestream.tissue.masks import clean_mask
from slidestream.tissue.models import ARTIFACT_CLASSES, SPECS
from slidestream.tissue.params import TissueParams
from slidestream.tissue.polygons import mask_to_polygons


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty: they agree)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _device(params: TissueParams) -> str:
    if params.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(None, f"device {params.device!r}: no CUDA device is available here")
    return params.device


_MODELS: dict[tuple[str, str | None, bool, str], tuple[Any, str, str | None]] = {}


def _model(name: str, weights: str | None, random_init: bool, device: str) -> tuple[Any, str, str | None]:
    """(model on ``device``, SHA-256, path), built once per process: a batch of slides loads it once.
    The weights file is re-hashed on every call, so a file replaced mid-run is loaded again."""
    from slidestream.tissue.seg_weights import RANDOM_INIT, resolve, sha256_file

    spec = SPECS[name]
    key = (name, weights, random_init, device)
    if key in _MODELS and (random_init or sha256_file(resolve(spec, weights)) == _MODELS[key][1]):
        return _MODELS[key]
    from slidestream.tissue.seg_weights import build_model

    model, sha, path = build_model(spec, weights, random_init=random_init)
    for old in [k for k in _MODELS if k[0] == name]:  # one copy per model: a GPU holds this run's, not every run's
        del _MODELS[old]
    _MODELS[key] = (model.to(device), sha if not random_init else RANDOM_INIT, path)
    return _MODELS[key]


def _run_deep(slide: Slide, params: TissueParams, image_shape: tuple[int, int],
              mpp: tuple[float, float]) -> tuple[np.ndarray, dict[str, Any]]:
    from slidestream.tissue.deep import Canvas, RunOptions, segment_tissue_canvas

    spec = SPECS[params.method]
    device = _device(params)
    model, sha, path = _model(spec.name, params.weights, params.random_init, device)
    options = RunOptions(device=device, batch_size=params.batch_size, threshold=params.threshold)
    mask = segment_tissue_canvas(slide, spec, model, Canvas(image_shape, mpp), options, mpp=params.model_mpp)
    precision = spec.cuda_dtype if device.startswith("cuda") else "float32"
    return mask, {"model": spec.name, "weights_file": spec.weight_file, "weights_path": path,
                  "weights_sha256": sha, "model_mpp": params.model_mpp or spec.mpp, "tile_px": 512,
                  "threshold": params.threshold, "precision": precision}


def _run_artifacts(slide: Slide, params: TissueParams, tissue: np.ndarray,
                   mpp: tuple[float, float]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from slidestream.tissue.deep import Canvas, RunOptions, segment_artifact_canvas

    spec = SPECS["grandqc_artifact"]
    device = _device(params)
    model, sha, path = _model(spec.name, params.artifact_weights, params.random_init, device)
    options = RunOptions(device=device, batch_size=params.batch_size)
    by_class = segment_artifact_canvas(slide, spec, model, Canvas(tissue.shape, mpp), options, tissue,
                                       mpp=params.artifact_mpp)
    masks = {ARTIFACT_CLASSES[c][0]: m for c, m in by_class.items()}
    return masks, {"model": spec.name, "weights_file": spec.weight_file, "weights_path": path,
                   "weights_sha256": sha, "model_mpp": params.artifact_mpp, "tile_px": 512}


def segment_tissue(slide: Slide, params: TissueParams | None = None) -> TissueResult:
    """Tissue of ``slide`` by ``params.method`` (and ``combine``, ``artifacts``): see the module doc."""
    params = params or TissueParams()
    if params.method == "classical" and not params.run_artifacts:
        return detect_tissue(slide, params)
    classical = detect_tissue(slide, params) if params.method == "classical" or params.combine else None
    if classical is not None:
        image, mpp = classical.image, classical.image_mpp
    else:
        image, mpp = slide.read_whole(working_mpp(slide, params))
    mean_mpp = float(np.mean(mpp))
    provenance: dict[str, Any] = {"method": params.method}
    iou = None
    dropped = classical.small_pieces_dropped if classical is not None else 0
    if params.method == "classical":
        assert classical is not None
        mask, pen, threshold = classical.mask, classical.pen, classical.threshold
    else:
        deep, provenance["tissue_model"] = _run_deep(slide, params, image.shape[:2], mpp)
        deep, dropped = clean_mask(deep, mean_mpp, params)
        threshold = params.threshold
        pen = np.zeros(deep.shape, bool)
        mask = deep
        if classical is not None:
            iou = mask_iou(classical.mask, deep)
            mask = (classical.mask & deep) if params.combine == "intersect" else (classical.mask | deep)
            pen = classical.pen & ~mask
            provenance["combine"] = params.combine
    artifacts: dict[str, Any] = {}
    if params.run_artifacts:
        masks, provenance["artifact_model"] = _run_artifacts(slide, params, mask, mpp)
        if params.exclude_artifacts:
            cut = np.zeros(mask.shape, bool)
            for name in params.exclude_artifacts:
                cut |= masks[name]
            mask, more = clean_mask(mask & ~cut, mean_mpp, params)
            dropped += more
            provenance["excluded_artifacts"] = list(params.exclude_artifacts)
        h, w = mask.shape
        scale = (slide.width / w, slide.height / h)
        for name, m in masks.items():
            polygons = mask_to_polygons(m, scale, params.simplify_px)
            artifacts[name] = shapely.union_all(polygons) if polygons else MultiPolygon()
    return result_from_mask(slide, image, mpp, mask, pen, threshold, params, small_pieces_dropped=dropped,
                            method=params.method, provenance=provenance, artifacts=artifacts, agreement_iou=iou)
