"""Direct JPEG-tile reading for tiled TIFF pyramids (SVS, generic TIFF, OME-TIFF SubIFDs) and
DICOM WSI series with JPEG baseline frames: the fast read path.

A generic reader decodes every JPEG tile under each requested region, again for every region
that touches it, at full resolution, then resizes. For a grid of tiles this wastes most of the
work. Here a region is served from a shared cache of decoded JPEG tiles (each tile decoded once
per scale, however many regions cover it), libjpeg-turbo decodes at a reduced DCT scale (1/2,
1/4, 1/8) when the target is coarser, and decoding runs in OpenCV's libjpeg-turbo binding, which
releases the GIL, so threads decode in parallel. Batches of windows are assembled by
:mod:`slidestream.io.jpeg_batch` (each JPEG tile decoded once and scattered into the batch).

At scale 1 the pixels equal openslide's for level-grid-aligned regions (same libjpeg-turbo,
same colour handling); reduced-scale decodes are libjpeg's DCT-domain downsampling, which
differs slightly from a bilinear resize and is recorded as such in provenance.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from slidestream.errors import SlideReadError
from slidestream.io._base import blend_shift, split_position
from slidestream.io.dicom import is_dicom_path, series_at
from slidestream.io.remote import remote_url

# An Adobe APP14 segment with transform=0 tells libjpeg the components are RGB, not YCbCr:
# Aperio writes RGB-coded JPEG tiles (TIFF photometric RGB) without any marker saying so.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
SCALES = (1, 2, 4, 8)


@dataclass(frozen=True)
class JpegLevel:
    width: int
    height: int
    tile_w: int
    tile_h: int
    offsets: np.ndarray
    counts: np.ndarray
    tables: bytes | None
    rgb_coded: bool
    source: int = 0  # where the tiles live, for readers that are not one TIFF file (DICOM level number)

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_w)


class DecodedTileCache:
    """LRU cache of decoded JPEG tiles, bounded in bytes so RAM stays flat over a long run."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return value

    def put(self, key: tuple, value: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes


class JpegPyramid:
    """The JPEG-tiled levels of one TIFF file, readable region by region at DCT scales."""

    def __init__(self, path: Path, levels: list[JpegLevel], cache: DecodedTileCache | None = None) -> None:
        self.path = Path(path)
        self.levels = levels
        self.cache = cache or DecodedTileCache()
        self._fd = os.open(self.path, os.O_RDONLY)

    @classmethod
    def open(cls, path: str | Path, level_dimensions: list[tuple[int, int]], cache: DecodedTileCache | None = None) -> JpegPyramid | None:
        """The pyramid if every slide level is a JPEG-tiled TIFF page (or DICOM instance with
        JPEG baseline frames), else None (use the backend)."""
        path = Path(path)
        if remote_url(path) is not None:  # direct tile reads need a local file descriptor
            return None
        if is_dicom_path(path):
            return DicomJpegPyramid.open_series(path, level_dimensions, cache)
        try:
            with tifffile.TiffFile(path) as tif:
                by_size = _jpeg_pages(tif, {(int(w), int(h)) for w, h in level_dimensions})
                levels = []
                for dims in level_dimensions:
                    page = by_size.get(tuple(dims))
                    if page is None:
                        return None
                    levels.append(JpegLevel(
                        width=page.imagewidth, height=page.imagelength, tile_w=page.tilewidth, tile_h=page.tilelength,
                        offsets=np.asarray(page.dataoffsets, dtype=np.int64),
                        counts=np.asarray(page.databytecounts, dtype=np.int64),
                        tables=bytes(page.jpegtables) if page.jpegtables else None,
                        rgb_coded=page.photometric == tifffile.PHOTOMETRIC.RGB,
                    ))
        except (OSError, ValueError, tifffile.TiffFileError):
            return None
        return cls(path, levels, cache)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JpegPyramid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net for forgotten handles
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ decoding
    def _jpeg_bytes(self, level: JpegLevel, index: int) -> bytes | bytearray:
        """The tile as a complete JPEG stream: SOI, Adobe RGB marker (RGB-coded tiles), the level's
        shared tables, then the tile without its own SOI, read straight after the spliced header
        (one read, no copy of the tile's bytes)."""
        count, offset = int(level.counts[index]), int(level.offsets[index])
        head = b"\xff\xd8" + (_ADOBE_RGB if level.rgb_coded else b"") + (level.tables[2:-2] if level.tables else b"")
        if len(head) == 2:
            data = os.pread(self._fd, count, offset)
            got = len(data)
        else:
            data = bytearray(len(head) + count - 2)
            data[:len(head)] = head
            got = os.preadv(self._fd, [memoryview(data)[len(head):]], offset + 2) + 2
        if got != count:
            raise OSError(f"{self.path}: short read of JPEG tile {index} (file truncated?)")
        return data

    def decode_tile(self, level_index: int, tx: int, ty: int, scale: int) -> np.ndarray:
        """One JPEG tile at 1/``scale`` size, uint8 (ceil(th/scale), ceil(tw/scale), 3); cached."""
        key = (level_index, tx, ty, scale)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        level = self.levels[level_index]
        index = ty * level.tiles_across + tx
        if level.counts[index] == 0:  # sparse tile: nothing scanned there
            out = np.full((-(-level.tile_h // scale), -(-level.tile_w // scale), 3), 255, np.uint8)
        else:
            data = self._jpeg_bytes(level, index)
            try:
                out = _decode_jpeg(data, scale, level.tile_w, level.tile_h)
            except (OSError, ValueError, SyntaxError) as exc:   # Pillow's words for a damaged JPEG
                raise SlideReadError(self.path, f"JPEG tile ({tx}, {ty}) of level {level_index} does not decode: "
                                                f"{type(exc).__name__}: {exc}") from exc
        self.cache.put(key, out)
        return out

    def read(self, level_index: int, x: int, y: int, w: int, h: int, scale: int = 1) -> np.ndarray:
        """Region of level ``level_index`` in level pixels [x, x+w) x [y, y+h), at 1/``scale``.

        ``x, y, w, h`` must be multiples of ``scale`` (so the output grid is exact). Outside the
        image is white, as everywhere in slidestream.
        """
        if scale not in SCALES or x % scale or y % scale or w % scale or h % scale:
            raise ValueError(f"region ({x}, {y}, {w}, {h}) is not aligned to DCT scale {scale}")
        level = self.levels[level_index]
        s = scale
        out = np.full((h // s, w // s, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, level.width), min(y + h, level.height)
        if x1 <= x0 or y1 <= y0:
            return out
        for ty in range(y0 // level.tile_h, (y1 - 1) // level.tile_h + 1):
            for tx in range(x0 // level.tile_w, (x1 - 1) // level.tile_w + 1):
                tile = self.decode_tile(level_index, tx, ty, s)
                # overlap of this JPEG tile with the region, in level pixels
                gx0, gy0 = max(tx * level.tile_w, x0), max(ty * level.tile_h, y0)
                gx1, gy1 = min((tx + 1) * level.tile_w, x1), min((ty + 1) * level.tile_h, y1)
                # in scaled pixels (tile origins are multiples of the tile size, itself a multiple of 8)
                sx0, sy0 = (gx0 - tx * level.tile_w) // s, (gy0 - ty * level.tile_h) // s
                ox0, oy0 = (gx0 - x) // s, (gy0 - y) // s
                cw, ch = -(-(gx1 - gx0) // s), -(-(gy1 - gy0) // s)
                cw = min(cw, tile.shape[1] - sx0, out.shape[1] - ox0)
                ch = min(ch, tile.shape[0] - sy0, out.shape[0] - oy0)
                out[oy0:oy0 + ch, ox0:ox0 + cw] = tile[sy0:sy0 + ch, sx0:sx0 + cw]
        return out

    def window(self, fx: float, fy: float, w: int, h: int, scale: int = 1) -> tuple[int, int, int, int, float, float]:
        """The scale-aligned level region (x, y, w, h) to decode for a ``w`` x ``h`` window whose
        top-left lies at fractional level position (fx, fy), and the sub-pixel shift (in scaled
        pixels) that :meth:`read_at` applies. ``w`` and ``h`` must be multiples of ``scale``."""
        s = scale
        ix, ax = split_position(fx / s)
        iy, ay = split_position(fy / s)
        return ix * s, iy * s, w + s * (ax > 0), h + s * (ay > 0), ax, ay

    def read_at(self, level_index: int, fx: float, fy: float, w: int, h: int, scale: int = 1) -> np.ndarray:
        """A ``w`` x ``h`` window (at 1/``scale``) whose top-left lies at the fractional level
        position (fx, fy): the sampling openslide's ``read_region`` does (bilinear sub-pixel
        shift), so tiles from levels with downsamples like 4.0015 land where the backend's do."""
        x, y, rw, rh, ax, ay = self.window(fx, fy, w, h, scale)
        region = self.read(level_index, x, y, rw, rh, scale)
        return region if ax == 0.0 and ay == 0.0 else blend_shift(region, ax, ay)

    def tiles_touched(self, level_index: int, x: int, y: int, w: int, h: int) -> list[tuple[int, int]]:
        """JPEG tiles (tx, ty) under a region: what a batch must decode before assembly."""
        level = self.levels[level_index]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, level.width), min(y + h, level.height)
        if x1 <= x0 or y1 <= y0:
            return []
        return [(tx, ty) for ty in range(y0 // level.tile_h, (y1 - 1) // level.tile_h + 1)
                for tx in range(x0 // level.tile_w, (x1 - 1) // level.tile_w + 1)]


class DicomJpegPyramid(JpegPyramid):
    """The VOLUME instances of a DICOM series whose frames are baseline JPEG, TILED_FULL, one
    focal plane and optical path: frames come out of the files undecoded (wsidicom), and are
    decoded here like TIFF tiles (cache, DCT scale, threads)."""

    _JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

    def __init__(self, path: Path, levels: list[JpegLevel], cache: DecodedTileCache | None, wsi: object) -> None:
        self.path = Path(path)
        self.levels = levels
        self.cache = cache or DecodedTileCache()
        self._fd = -1
        self._wsi = wsi

    @classmethod
    def open_series(cls, path: Path, level_dimensions: list[tuple[int, int]],
                    cache: DecodedTileCache | None = None) -> DicomJpegPyramid | None:
        try:
            import pydicom
            import wsidicom

            series = series_at(path)
            by_size = {}
            for inst in series.volumes:
                ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
                ok = (str(ds.file_meta.get("TransferSyntaxUID", "")) == cls._JPEG_BASELINE
                      and str(ds.get("DimensionOrganizationType", "TILED_FULL")) == "TILED_FULL"
                      and int(ds.get("SamplesPerPixel", 0)) == 3 and int(ds.get("BitsAllocated", 0)) == 8
                      and int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1) == 1
                      and int(ds.get("NumberOfOpticalPaths", 1) or 1) == 1)
                if ok:
                    by_size.setdefault((inst.width, inst.height), (int(ds.Columns), int(ds.Rows), str(ds.PhotometricInterpretation)))
            if any(tuple(d) not in by_size for d in level_dimensions):
                return None
            wsi = wsidicom.WsiDicom.open(series.files)
            numbers = {(lvl.size.width, lvl.size.height): lvl.level for lvl in wsi.levels}
            levels = []
            for w, h in level_dimensions:
                tw, th, photometric = by_size[(w, h)]
                n = -(-w // tw) * -(-h // th)
                levels.append(JpegLevel(width=w, height=h, tile_w=tw, tile_h=th, offsets=np.zeros(n, np.int64),
                                        counts=np.ones(n, np.int64), tables=None, rgb_coded=photometric == "RGB",
                                        source=numbers[(w, h)]))
        except Exception:  # anything unexpected in the headers: the backend reads it instead
            return None
        return cls(path, levels, cache, wsi)

    def _jpeg_bytes(self, level: JpegLevel, index: int) -> bytes:
        tx, ty = index % level.tiles_across, index // level.tiles_across
        data = self._wsi.read_encoded_tile(level.source, (tx, ty), crop_to_image_boundary=False)  # type: ignore[attr-defined]
        return data[:2] + _ADOBE_RGB + data[2:] if level.rgb_coded else data

    def close(self) -> None:
        wsi, self._wsi = getattr(self, "_wsi", None), None
        if wsi is not None:
            wsi.close()  # type: ignore[attr-defined]


def _is_jpeg_tiled(page: object) -> bool:
    return (isinstance(page, tifffile.TiffPage) and page.is_tiled and page.compression == tifffile.COMPRESSION.JPEG
            and page.samplesperpixel == 3 and page.planarconfig == tifffile.PLANARCONFIG.CONTIG
            and page.bitspersample == 8)


def _jpeg_pages(tif: tifffile.TiffFile, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], tifffile.TiffPage]:
    """The JPEG-tiled page of each wanted (width, height), as far as the file has them.

    Top-level pages are parsed from the last (smallest level) back and only until every wanted
    size is found: a page's parse reads its whole tile-offset table (160,000 entries, ~15 ms, for
    level 0 of a 100k-pixel slide), which a read of one coarse level never needs. Pyramid levels
    kept in SubIFDs (OME-TIFF, libvips) are looked up through the series when pages lack some.
    """
    by_size: dict[tuple[int, int], tifffile.TiffPage] = {}
    pages = tif.pages
    for i in reversed(range(len(pages))):
        page = pages[i]
        if _is_jpeg_tiled(page) and (page.imagewidth, page.imagelength) in wanted:
            by_size[(page.imagewidth, page.imagelength)] = page   # the first page of a size wins, as before
        if wanted <= by_size.keys():
            return by_size
    for series in tif.series:
        for lvl in series.levels[1:]:
            page = lvl.keyframe
            if _is_jpeg_tiled(page) and (page.imagewidth, page.imagelength) in wanted:
                by_size.setdefault((page.imagewidth, page.imagelength), page)
    return by_size


def _decode_jpeg(data: bytes, scale: int, tile_w: int, tile_h: int) -> np.ndarray:
    """RGB pixels of one JPEG tile at 1/``scale``.

    Decoded by OpenCV's libjpeg-turbo (``cv2.imdecode``) at every scale: the same decoder and
    settings as Pillow's (identical pixels at scales 1 to 1/8 on the shared and benchmark slides,
    checked in the tests), 1.2-1.6x faster per 256 px tile, with the GIL released; and it refuses
    a truncated tile rather than returning it half grey (imagecodecs' ``jpeg8_decode`` does).
    Anything OpenCV refuses goes to Pillow, which decodes what it can and raises on the rest.
    """
    flags, bgr = _cv2_flags(scale)
    out = _cv2().imdecode(np.frombuffer(data, np.uint8), flags)
    if out is not None and out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8:
        return out[..., ::-1].copy() if bgr else out
    image = Image.open(io.BytesIO(data))
    if scale > 1:
        image.draft("RGB", (-(-tile_w // scale), -(-tile_h // scale)))
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)


@functools.cache
def _cv2():  # imported on first decode, not at module import: commands that never decode start lean
    import cv2

    return cv2


@functools.cache
def _cv2_flags(scale: int) -> tuple[int, bool]:
    """imdecode flags for RGB (BGR on OpenCV < 4.10, flipped after), no EXIF rotation, 1/``scale``."""
    cv2 = _cv2()
    reduce = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
              8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[scale]       # the "reduce" bit alone (grayscale = no colour bit)
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    return reduce | (rgb if rgb is not None else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION, rgb is None


def dct_scale(read_px: int, out_px: int, tolerance: float = 0.02) -> int:
    """Largest DCT scale (1, 2, 4, 8) not coarser than the needed reduction (within tolerance)."""
    factor = read_px / out_px
    return max(s for s in SCALES if s <= factor * (1 + tolerance))
