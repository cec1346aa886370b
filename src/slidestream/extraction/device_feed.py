"""Keep an accelerator fed: pinned staging, asynchronous copies, results collected one batch late.

Why: ``encoder(batch)`` on a GPU copies a pageable numpy batch (a synchronous copy, the host
waits), runs the model, then ``.cpu()`` waits for the model to finish before the next batch is
even handed over. The GPU idles for the copy and for the host's turnaround on every batch. Here:

- each uint8 batch is copied into one of a few pre-allocated **pinned** host buffers (page-locked,
  so the DMA engine can read it while the host goes on; on the CPU a plain buffer is used);
- the host→device copy runs on a **side CUDA stream**, so it overlaps the previous batch's forward
  pass; the compute stream waits on it by an event, not the host;
- the uint8 NHWC tile goes to the device as is (4× fewer bytes than float) and is converted,
  resized and normalised there by the encoder's own :func:`~slidestream.encoders.preprocess.preprocess`
  — the very function the CPU path uses, so the numbers cannot drift apart;
- features come back with a non-blocking device→host copy and are handed to the caller **one
  batch late**: while the host waits for batch *i*'s features, batch *i + 1* is already queued.

On the CPU every step is synchronous and the results equal ``encoder(batch)`` bit for bit (tested).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch


class DeviceFeeder:
    """Turn ``(row, uint8 batch)`` pairs into ``(row, float32 features)`` pairs on ``encoder.device``.

    ``buffers`` pinned staging buffers are reused round-robin; a buffer is refilled only after
    the copy that last read it has finished (its event), so a slow copy can never see new data.
    """

    def __init__(self, encoder: Any, *, buffers: int = 3, stage: bool | None = None) -> None:
        self.encoder = encoder
        self.device: torch.device = torch.device(getattr(encoder, "device", "cpu"))
        self.cuda = self.device.type == "cuda"
        # staging costs one host memcpy; it pays only with a DMA engine behind it (tests force it on CPU)
        self.stage = self.cuda if stage is None else stage
        self._buffers: list[torch.Tensor | None] = [None] * max(2, buffers)
        self._copied: list[Any] = [None] * len(self._buffers)   # event after the last copy from each buffer
        self._copy_stream = torch.cuda.Stream(device=self.device) if self.cuda else None
        self._turn = 0

    # ------------------------------------------------------------------ staging
    def _staging(self, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        """A host buffer (pinned on CUDA) holding ``batch``, free of any copy still reading it."""
        slot = self._turn % len(self._buffers)
        self._turn += 1
        buf = self._buffers[slot]
        if buf is None or buf.shape[1:] != batch.shape[1:] or buf.shape[0] < len(batch):
            buf = self._new_buffer(batch.shape)
            self._buffers[slot] = buf
        elif self._copied[slot] is not None:
            self._copied[slot].synchronize()   # the previous copy out of this buffer is done
        view = buf[: len(batch)]
        view.numpy()[...] = batch
        return view, slot

    def _new_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Pinned on CUDA; pageable where page-locking fails (a low ``ulimit -l``): slower, still exact."""
        if self.cuda:
            try:
                return torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            except RuntimeError:
                pass
        return torch.empty(shape, dtype=torch.uint8)

    def upload(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) numpy → the same tensor on the device, copied asynchronously."""
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"tiles must be uint8 (B, H, W, 3), got {batch.dtype} {batch.shape}")
        if not self.stage:
            return torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        host, slot = self._staging(batch)
        if self._copy_stream is None:   # no CUDA: a synchronous copy, the buffer is free again at once
            return host.to(self.device, copy=True)
        compute = torch.cuda.current_stream(self.device)
        # no wait on the compute stream here: the copy overlaps the previous forward pass; device
        # memory reuse is guarded by ``record_stream`` below, host buffer reuse by the slot's event
        with torch.cuda.stream(self._copy_stream):
            dev = host.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        self._copied[slot] = done
        compute.wait_event(done)
        dev.record_stream(compute)   # the caching allocator keeps it until the compute stream is past it
        return dev

    # ------------------------------------------------------------------ the loop
    def _features(self, dev: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        if hasattr(enc, "preprocess") and hasattr(enc, "embed"):
            return enc.embed(enc.preprocess(dev))
        return torch.as_tensor(enc(dev.cpu().numpy()))   # a plain callable: no device work to overlap

    def run(self, batches: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row, features)`` in input order; on CUDA each result is collected one batch late."""
        pending: deque[tuple[int, torch.Tensor, Any]] = deque()
        for row, batch in batches:
            feats = self._features(self.upload(batch))
            if self.cuda:
                host = feats.to("cpu", non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(torch.cuda.current_stream(self.device))
                pending.append((row, host, ready))
                if len(pending) > 1:   # batch i+1 is queued on the GPU before we wait for batch i
                    yield self._collect(pending.popleft())
            else:
                yield row, feats.detach().cpu().numpy()
        while pending:
            yield self._collect(pending.popleft())

    @staticmethod
    def _collect(item: tuple[int, torch.Tensor, Any]) -> tuple[int, np.ndarray]:
        row, host, ready = item
        ready.synchronize()
        return row, host.numpy()


def use_device_feed(encoder: Any, option: bool | None) -> bool:
    """The feeder runs when asked, or by default when the encoder sits on a CUDA device."""
    if option is not None:
        return option
    device = getattr(encoder, "device", None)
    return device is not None and torch.device(device).type == "cuda"
