"""Tiling: a regular grid at a target mpp, tissue fraction per tile from the polygons."""

from slidestream.tiling.coverage import tissue_fractions
from slidestream.tiling.grid import TileGrid, lattice, tile_slide

__all__ = ["TileGrid", "lattice", "tile_slide", "tissue_fractions"]
