"""Load an encoder in a background thread while the job tiles its first slide.

Why: a per-slide job spends seconds importing torch (and timm, torchvision) and building the
model before it can embed anything, and about as long opening the slide, detecting tissue and
writing tiles, which need none of that. Tiling needs only the encoder's name and native scale,
which the registry knows without importing the family (``registry.native_tiling``); so the job
starts :class:`EncoderLoad` as soon as its arguments are checked and joins it before the first
forward. Tissue detection and tile writing spend most of their time in cv2, numpy and zarr
code that releases the GIL, so the two overlap even on two cores.

A load that fails raises the original exception, unchanged, from :meth:`EncoderLoad.result`, so
callers report it exactly as they would a load in the foreground; the pipeline sees it wrapped
in :class:`EncoderLoadFailed`, a ``BaseException`` that no per-slide handler records as a slide's
failure (the encoder is the run's problem, not the slide's).

This module imports no torch: the thread does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slidestream.encoders.registry import canonical_name, native_tiling

if TYPE_CHECKING:
    from slidestream.encoders.encoder import Encoder


class EncoderLoadFailed(BaseException):  # carries the original error, not a new kind
    """The background load raised ``error``; stops the batch instead of failing one slide."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class EncoderLoad:
    """``load_encoder(name, **kwargs)`` running in a thread from construction.

    ``name`` is checked at once (an unknown name raises ``ConfigError`` here, before any work);
    ``name``, ``native_mpp`` and ``tile_size`` are known without waiting; :meth:`result` waits
    and returns the :class:`~slidestream.encoders.Encoder` (or raises the load's error).
    ``on_ready`` runs once, in the thread that first gets the encoder.
    """

    def __init__(self, name: str, *, on_ready: Callable[[Encoder], None] | None = None, **kwargs: Any) -> None:
        self.name = canonical_name(name)
        self.native_mpp, self.tile_size = native_tiling(self.name)
        self._kwargs = kwargs
        self._on_ready = on_ready
        self._encoder: Encoder | None = None
        self._error: BaseException | None = None
        self._delivered = False
        self._lock = threading.Lock()
        self._device_checked = threading.Event()
        # daemon: a usage error found meanwhile exits at once instead of waiting for torch
        self._thread = threading.Thread(target=self._run, name=f"load-encoder-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from slidestream.encoders.devices import resolve_device
            from slidestream.encoders.encoder import load_encoder

            resolve_device(self._kwargs.get("device", "cpu"))   # load_encoder's first check, made early
            self._device_checked.set()
            self._encoder = load_encoder(self.name, **self._kwargs)
        except BaseException as exc:  # handed over to the joining thread as is
            self._error = exc
        finally:
            self._device_checked.set()

    def check_device(self) -> None:
        """Wait until the device is known to be usable (torch imported, the device probed), not
        for the model; raises the load's error if that is what failed. A job on a GPU calls this
        before touching any slide, so a bad ``--device`` stops it before any output is written."""
        self._device_checked.wait()
        if self._error is not None:
            raise self._error

    def result(self) -> Encoder:
        """The loaded encoder; raises what the load raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._encoder is not None
        with self._lock:
            first, self._delivered = not self._delivered, True
        if first and self._on_ready is not None:
            self._on_ready(self._encoder)
        return self._encoder

    def for_pipeline(self) -> Encoder:
        """:meth:`result` for code inside a batch: a failed load becomes :class:`EncoderLoadFailed`."""
        try:
            return self.result()
        except Exception as exc:
            raise EncoderLoadFailed(exc) from exc


def resolve(encoder: Any) -> Any:
    """``encoder`` itself, or the encoder an :class:`EncoderLoad` produced (waiting for it)."""
    return encoder.for_pipeline() if isinstance(encoder, EncoderLoad) else encoder


def encoder_name(encoder: Any) -> str:
    """The registry name of a loaded or loading encoder, without waiting."""
    return encoder.name if isinstance(encoder, EncoderLoad) else encoder.spec.name


def encoder_tiling(encoder: Any) -> tuple[float, int]:
    """(native mpp, tile size) of a loaded or loading encoder, without waiting."""
    if isinstance(encoder, EncoderLoad):
        return encoder.native_mpp, encoder.tile_size
    return encoder.spec.native_mpp, encoder.spec.tile_size
