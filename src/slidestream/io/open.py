"""`open_slide`: choose a backend, validate the file, and hand back a :class:`Slide`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from slidestream.errors import SlideOpenError
from slidestream.io.backend import BACKENDS, candidates, make_backend
from slidestream.io.integrity import check_file, check_remote
from slidestream.io.remote import RemoteError, remote_url
from slidestream.io.slide import Slide

BackendName = Literal["auto", "openslide", "tiffslide", "wsidicom", "czi"]


def open_slide(
    path: str | Path,
    backend: BackendName = "auto",
    mpp: float | tuple[float, float] | None = None,
    default_mpp: float | None = None,
) -> Slide:
    """Open a whole-slide image.

    ``backend="auto"`` tries the backends that suit the format, best first (see
    :mod:`slidestream.io.backend`: openslide for vendor formats and DICOM series, tiffslide for
    OME-TIFF and plain TIFFs, pylibCZIrw for CZI); a name forces that backend. ``mpp``
    overrides the file's resolution; ``default_mpp`` is used only when the file carries none
    (safer for batches that mix well- and badly-described slides).

    Raises :class:`SlideOpenError` with the path and the reason when no backend can read it.
    """
    url = remote_url(path)
    path = Path(path)
    try:
        if url is not None:
            check_remote(url)
        else:
            check_file(path)
    except (OSError, ValueError) as exc:
        raise SlideOpenError(url or path, str(exc) if str(exc) else type(exc).__name__) from exc
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    if url is not None:  # only tiffslide reads through fsspec; the others need a local file
        if backend not in ("auto", "tiffslide"):
            raise SlideOpenError(url, f"backend {backend} reads local files only; remote slides are read with tiffslide")
        names: tuple[str, ...] = ("tiffslide",)
    else:
        names = candidates(path) if backend == "auto" else (backend,)
    failures: list[str] = []
    for name in names:
        try:
            handle = make_backend(name, path)
        except RemoteError as exc:
            raise SlideOpenError(url or path, str(exc)) from exc
        except Exception as exc:  # each backend has its own error zoo; all mean "not by me"
            failures.append(f"{name}: {type(exc).__name__}: {exc}".rstrip(": "))
            continue
        try:
            slide = Slide(handle, mpp_override=mpp, default_mpp=default_mpp)
            if slide.width <= 0 or slide.height <= 0 or slide.level_count == 0:
                raise ValueError("no image levels")
            # Decoding one small region proves the pixel path works (catches codecs the backend
            # cannot decode, e.g. JPEG 2000 without its plugin) at open time, not mid-run.
            lw, lh = slide.level_dimensions[-1]
            slide.read_region((0, 0), slide.level_count - 1, (min(lw, 16), min(lh, 16)))
        except Exception as exc:
            handle.close()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        return slide
    raise SlideOpenError(url or path, "not readable as a slide (" + "; ".join(failures) + ")")
