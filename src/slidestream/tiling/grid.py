"""A regular tile grid at a physical resolution, kept where there is enough tissue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from slidestream.errors import ConfigError
from slidestream.io import ReadPlan, Slide
from slidestream.tiling.coverage import mask_fractions, tissue_fractions
from slidestream.tiling.focus import focus_reference, focus_scores, in_focus
from slidestream.tiling.qc import QC_COLUMNS, keep_by_qc, qc_fractions, qc_image
from slidestream.tissue.detect import TissueResult


@dataclass
class TileGrid:
    """Tiles of one slide, described so anyone can re-read them exactly.

    ``coords`` are level-0 top-left (x, y). Each tile is ``read_size`` pixels read at
    ``read_level`` (covering ``level0_size`` level-0 pixels), resized to ``tile_size`` at
    ``target_mpp`` when the two differ.
    """

    coords: np.ndarray              # int64 (N, 2)
    tissue_fraction: np.ndarray     # float32 (N,)
    target_mpp: float
    tile_size: int
    overlap: int
    min_tissue: float
    plan: ReadPlan
    slide_size: tuple[int, int]
    slide_mpp: tuple[float, float]
    stride0: float                  # level-0 px between neighbouring tiles
    extra: dict[str, Any] = field(default_factory=dict)
    focus: np.ndarray | None = None  # float32 (N,) sharpness of the kept tiles, when measured
    qc: np.ndarray | None = None     # float32 (N, 3) white/black/grey shares (tiling/qc.py), when measured

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def read_level(self) -> int:
        return self.plan.level

    @property
    def read_size(self) -> tuple[int, int]:
        return self.plan.read_size

    @property
    def level0_size(self) -> tuple[int, int]:
        return self.plan.level0_size

    def attrs(self) -> dict[str, Any]:
        return {
            "target_mpp": self.target_mpp,
            "tile_size_px": self.tile_size,
            "overlap_px": self.overlap,
            "stride_px": self.tile_size - self.overlap,
            "stride_level0": self.stride0,
            "min_tissue": self.min_tissue,
            "read_level": self.plan.level,
            "read_size": list(self.plan.read_size),
            "read_level_mpp": self.plan.level_mpp,
            "level0_size": list(self.plan.level0_size),
            "slide_size": list(self.slide_size),
            "slide_mpp": list(self.slide_mpp),
            "n_tiles": len(self),
            **self.extra,
        }


def lattice(slide_size: tuple[int, int], stride0: float) -> np.ndarray:
    """All grid top-lefts inside the slide, anchored at (0, 0), row-major. int64 (M, 2)."""
    w, h = slide_size
    nx, ny = int(np.ceil(w / stride0)), int(np.ceil(h / stride0))
    xs = np.rint(np.arange(nx) * stride0).astype(np.int64)
    ys = np.rint(np.arange(ny) * stride0).astype(np.int64)
    xs, ys = xs[xs < w], ys[ys < h]
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def tile_slide(
    slide: Slide,
    tissue: TissueResult | np.ndarray | BaseGeometry | None,
    *,
    mpp: float | None = 0.5,
    magnification: float | None = None,
    tile_size: int = 224,
    overlap: int = 0,
    min_tissue: float = 0.25,
    allow_upsample: bool = False,
    min_focus_ratio: float | None = None,
    focus_mpp: float = 2.0,
    tile_qc: bool = False,
    qc_mpp: float = 4.0,
    max_white: float | None = None,
    max_black: float | None = None,
    max_grey: float | None = None,
) -> TileGrid:
    """Tile ``slide`` at ``mpp`` (or ``magnification``, via the objective power).

    ``tissue`` is the detection result (``detect_tissue(slide)``: coverage comes from its raster
    mask, the fast path), such a mask itself (bool, spanning the slide, e.g. a store's), or any
    level-0 tissue geometry (e.g. QuPath annotations: coverage comes from the polygons); tiles
    keep when their tissue fraction is at least ``min_tissue``.
    ``overlap`` is in target px.
    """
    if tile_size <= 0:
        raise ConfigError(slide.path, f"tile_size must be positive, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ConfigError(slide.path, f"overlap must be in [0, tile_size), got {overlap} for tile_size {tile_size}")
    if not 0.0 <= min_tissue <= 1.0:
        raise ConfigError(slide.path, f"min_tissue must be within [0, 1], got {min_tissue}")
    if magnification is not None:
        mpp = slide.mpp_for_magnification(magnification)
    if mpp is None or mpp <= 0:
        raise ConfigError(slide.path, "give a positive mpp or a magnification")
    plan = slide.plan(mpp, tile_size, allow_upsample=allow_upsample)
    level0_per_px = plan.level0_size[0] / tile_size
    stride0 = (tile_size - overlap) * level0_per_px
    candidates = lattice(slide.dimensions, stride0)
    if isinstance(tissue, TissueResult):
        tissue = tissue.mask
    if isinstance(tissue, np.ndarray):
        fractions = mask_fractions(tissue, slide.dimensions, candidates, plan.level0_size)
        empty = not tissue.any()
    else:
        fractions = tissue_fractions(tissue, slide.dimensions, candidates, plan.level0_size)
        empty = tissue is not None and tissue.is_empty
    keep = fractions >= min_tissue if min_tissue > 0 else np.ones(len(candidates), bool)
    if min_tissue > 0 and empty:
        keep[:] = False
    extra: dict[str, Any] = {"magnification": magnification} if magnification is not None else {}
    coords, fractions = candidates[keep], fractions[keep]
    qc = None
    if tile_qc or any(m is not None for m in (max_white, max_black, max_grey)):
        image, image_mpp = qc_image(slide, qc_mpp)
        qc = qc_fractions(image, image_mpp, slide.mpp, coords, plan.level0_size)
        clean = keep_by_qc(qc, max_white, max_black, max_grey)
        extra.update(qc_mpp=float(np.mean(image_mpp)), qc_columns=list(QC_COLUMNS), max_white=max_white,
                     max_black=max_black, max_grey=max_grey, qc_dropped=int((~clean).sum()))
        coords, fractions, qc = coords[clean], fractions[clean], qc[clean]
    focus = None
    if min_focus_ratio is not None:
        scores = focus_scores(slide, coords, plan.level0_size, focus_mpp)
        sharp = in_focus(scores, min_focus_ratio)
        extra.update(focus_mpp=focus_mpp, min_focus_ratio=min_focus_ratio, out_of_focus_dropped=int((~sharp).sum()),
                     focus_reference=focus_reference(scores))
        coords, fractions, focus = coords[sharp], fractions[sharp], scores[sharp]
        qc = qc[sharp] if qc is not None else None
    return TileGrid(
        coords=coords, tissue_fraction=fractions, target_mpp=float(mpp),
        tile_size=tile_size, overlap=overlap, min_tissue=min_tissue, plan=plan,
        slide_size=slide.dimensions, slide_mpp=slide.mpp, stride0=stride0, extra=extra, focus=focus, qc=qc,
    )
