"""Run a deep segmenter tile by tile over a slide, at the model's resolution, onto a small canvas.

As TRIDENT does (``WSI._segment_semantic``): non-overlapping 512 px tiles at the model's um/px,
batched, each decided at that resolution by the release's rule. Pixels past the slide's edge
are white (our reader's convention for every backend). Unlike TRIDENT, the full-resolution mask
is never held: each tile's decision is area-resampled onto the canvas it lands on (the working
image of tissue detection, 2-16 um/px) and kept where at least half of it is tissue. The canvas
is what polygons are traced on anyway, and a 1 um/px mask of a 2 cm slide would be 400 MB.

A slide that is small at the model's resolution (GrandQC at 10 um/px: always) is read once as a
whole, the way the slide reader assembles thumbnails, and cut into tiles; a large one is read
tile by tile from the best pyramid level.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from slidestream.io import Slide, resize_rgb
from slidestream.tissue.models import (
    ARTIFACT_CLASSES,
    SegModelSpec,
    decide_artifacts,
    decide_tissue,
    logits,
    preprocess,
)

TILE = 512
WHOLE_READ_MAX_PX = 48_000_000  # read the whole slide at the model's mpp when it is at most this many px


@dataclass(frozen=True)
class Canvas:
    """Where tile decisions land: (H, W) pixels of ``mpp`` (x, y) um covering the whole slide."""

    shape: tuple[int, int]
    mpp: tuple[float, float]


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    batch_size: int = 8
    threshold: float = 0.5


def _tile_origins(slide: Slide, mpp: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Top-left (X, Y) of every tile in model pixels, row-major, and the slide size there."""
    mx, my = slide.mpp
    wm, hm = max(1, round(slide.width * mx / mpp)), max(1, round(slide.height * my / mpp))
    xs, ys = np.arange(0, wm, TILE), np.arange(0, hm, TILE)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()]), (wm, hm)


class _TileReader:
    """512 px RGB tiles at ``mpp``: from one whole read when small, else one read per tile."""

    def __init__(self, slide: Slide, mpp: float, size: tuple[int, int]) -> None:
        self.slide, self.mpp, self.size = slide, mpp, size
        self.whole: np.ndarray | None = None
        wm, hm = size
        if wm * hm <= WHOLE_READ_MAX_PX:
            image, _ = slide.read_whole(mpp)
            if (image.shape[1], image.shape[0]) != (wm, hm):  # model finer than level 0, or rounding
                image = resize_rgb(image, (wm, hm))
            pad = ((0, -hm % TILE), (0, -wm % TILE), (0, 0))
            self.whole = np.pad(image, pad, constant_values=255)

    def read(self, x: int, y: int) -> np.ndarray:
        if self.whole is not None:
            return self.whole[y:y + TILE, x:x + TILE]
        mx, my = self.slide.mpp
        return self.slide.read_at_mpp(round(x * self.mpp / mx), round(y * self.mpp / my), self.mpp, TILE,
                                      allow_upsample=True)


def _footprint(x: int, y: int, mpp: float, canvas: Canvas) -> tuple[int, int, int, int]:
    """Canvas pixel box [x0, x1) x [y0, y1) of the model tile at (x, y); neighbours share edges."""
    rx, ry = mpp / canvas.mpp[0], mpp / canvas.mpp[1]
    return round(x * rx), round((x + TILE) * rx), round(y * ry), round((y + TILE) * ry)


def _paste(dst: np.ndarray, tile: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Area-resample a float tile onto its box in ``dst``, clipped at the canvas border."""
    x0, x1, y0, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    small = cv2.resize(tile, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    h, w = dst.shape[:2]
    cx1, cy1 = min(x1, w), min(y1, h)
    if cx1 > x0 and cy1 > y0:
        dst[y0:cy1, x0:cx1] = small[:cy1 - y0, :cx1 - x0]


def _batches(origins: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(origins), size):
        yield origins[i:i + size]


def _forward(model: object, tiles: np.ndarray, spec: SegModelSpec, device: str) -> object:
    import torch

    batch = torch.from_numpy(preprocess(tiles, spec)).to(device)
    use_amp = device.startswith("cuda") and spec.cuda_dtype == "float16"
    with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=torch.float16, enabled=use_amp):
        return logits(model, batch, spec)


def segment_tissue_canvas(slide: Slide, spec: SegModelSpec, model: object, canvas: Canvas, options: RunOptions,
                          *, mpp: float | None = None) -> np.ndarray:
    """Boolean tissue mask on ``canvas`` from ``model`` run at ``mpp`` (default: the release's)."""
    mpp = mpp or spec.mpp
    origins, size = _tile_origins(slide, mpp)
    reader = _TileReader(slide, mpp, size)
    share = np.zeros(canvas.shape, np.float32)
    for batch in _batches(origins, options.batch_size):
        tiles = np.stack([reader.read(int(x), int(y)) for x, y in batch])
        tissue = decide_tissue(_forward(model, tiles, spec, options.device), spec, options.threshold)
        for (x, y), t in zip(batch.tolist(), tissue.cpu().numpy(), strict=True):
            _paste(share, t.astype(np.float32), _footprint(x, y, mpp, canvas))
    return share >= 0.5


def segment_artifact_canvas(slide: Slide, spec: SegModelSpec, model: object, canvas: Canvas, options: RunOptions,
                            gate: np.ndarray, *, mpp: float | None = None) -> dict[int, np.ndarray]:
    """Boolean mask per GrandQC artifact class on ``canvas``, inside ``gate`` (the tissue).

    As GrandQC's script: only tiles that hold tissue are run (the rest is background), and every
    pixel the tissue mask calls background is background.
    """
    mpp = mpp or spec.mpp
    origins, size = _tile_origins(slide, mpp)
    boxes = [_footprint(int(x), int(y), mpp, canvas) for x, y in origins]
    keep = np.array([gate[y0:y1, x0:x1].any() for x0, x1, y0, y1 in boxes], bool)
    shares = {c: np.zeros(canvas.shape, np.float32) for c in ARTIFACT_CLASSES}
    if keep.any():
        reader = _TileReader(slide, mpp, size)
        for batch in _batches(origins[keep], options.batch_size):
            tiles = np.stack([reader.read(int(x), int(y)) for x, y in batch])
            classes = decide_artifacts(_forward(model, tiles, spec, options.device)).cpu().numpy()
            for (x, y), cls in zip(batch.tolist(), classes, strict=True):
                box = _footprint(x, y, mpp, canvas)
                for c, share in shares.items():
                    _paste(share, (cls == c).astype(np.float32), box)
    return {c: (share >= 0.5) & gate for c, share in shares.items()}


