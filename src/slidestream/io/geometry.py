"""The one place that decides which pyramid level serves a physical resolution.

Tiling stores what this module plans, and extraction reads exactly that plan, so a tile's
pixels never depend on who reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

# 0.499 um/px must count as 0.5 um/px: scanners report their calibration, not a round number.
MPP_TOLERANCE = 0.05


@dataclass(frozen=True)
class ReadPlan:
    """How to obtain ``out_size`` pixels at ``target_mpp``: read ``read_size`` at ``level``."""

    level: int
    read_size: tuple[int, int]
    out_size: tuple[int, int]
    level0_size: tuple[int, int]
    target_mpp: float
    level_mpp: float

    @property
    def needs_resize(self) -> bool:
        return self.read_size != self.out_size


def choose_level(level_mpps: list[float], target_mpp: float, tolerance: float = MPP_TOLERANCE) -> int | None:
    """Coarsest level whose pixels are at least as fine as the target (within tolerance).

    Returns None when even level 0 is coarser than the target: the caller must decide whether
    upsampling is acceptable, this function never silently does it.
    """
    fine_enough = [lvl for lvl, mpp in enumerate(level_mpps) if mpp <= target_mpp * (1.0 + tolerance)]
    return max(fine_enough, key=lambda lvl: level_mpps[lvl], default=None)


def plan_read(
    level_mpps: list[float],
    level_downsamples: list[float],
    target_mpp: float,
    out_size: tuple[int, int],
    *,
    tolerance: float = MPP_TOLERANCE,
    allow_upsample: bool = False,
) -> ReadPlan | None:
    """Plan a read of ``out_size`` target pixels. None means "would need upsampling"."""
    level = choose_level(level_mpps, target_mpp, tolerance)
    if level is None:
        if not allow_upsample:
            return None
        level = 0
    level_mpp = level_mpps[level]
    out_w, out_h = out_size
    if abs(level_mpp - target_mpp) <= target_mpp * tolerance:
        read_w, read_h = out_w, out_h
    else:
        scale = target_mpp / level_mpp
        read_w, read_h = max(1, round(out_w * scale)), max(1, round(out_h * scale))
    # The level-0 footprint is what the read really covers, so tiles of a grid that step by it
    # neither overlap nor leave gaps at level 0.
    down = level_downsamples[level]
    level0 = (max(1, round(read_w * down)), max(1, round(read_h * down)))
    return ReadPlan(level, (read_w, read_h), (out_w, out_h), level0, target_mpp, level_mpp)
