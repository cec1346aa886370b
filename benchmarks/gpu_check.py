"""Does the extraction pipeline keep a GPU fed? tiles/s for reading, the model alone, and both.

Run on a machine with an NVIDIA GPU (finishes in under 5 minutes)::

    PYTHONPATH=src python benchmarks/gpu_check.py                 # cuda, bf16, ViT-L/16 + ResNet50
    PYTHONPATH=src python benchmarks/gpu_check.py --slide BIG.svs --workers 8 --batch-size 128

and anywhere as a check that the script itself works (tiny models, a second per stage)::

    PYTHONPATH=src python benchmarks/gpu_check.py --smoke         # CPU is fine

Stages, each timed for ``--seconds`` after a warm-up batch, on the same tiles of one slide:

- ``read``: the tile reader alone (threads decoding JPEG tiles into uint8 batches);
- ``forward``: one uint8 batch already on the device, then on-device preprocessing (resize,
  normalise) and the forward pass: the most the GPU can do, the pipeline's ceiling;
- ``pipeline``: reader threads → pinned staging → async copy → preprocessing → forward →
  features back on the host (``extraction.device_feed``), i.e. what ``extract`` runs minus the
  zarr writes (a 1,024-row chunk every 1,024 tiles).

Models, random-init (no download): ``uni`` (ViT-L/16, UNI-sized, 303 M) and ``resnet50-trunc``
(ResNet50 to layer 3, the CLAM baseline), at ``--precision`` (bf16 on CUDA). GPU utilisation is
sampled every 0.2 s (``torch.cuda.utilization``, which needs ``pynvml``, else ``nvidia-smi``).
The target on a GPU: ``pipeline / forward >= 0.9`` for ViT-L/16 at bf16; below that the GPU
waits on the reader (raise ``--workers``) or on transfers.

Not done here: decoding JPEG tiles on the GPU (``torchvision.io.decode_jpeg(device="cuda")``,
nvJPEG) for the fast reader — the reader decodes on the CPU; when ``read`` is the bottleneck
on a GPU node, that is the next lever.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidestream.encoders import get_spec, load_encoder
from slidestream.encoders.encoder import Encoder
from slidestream.extraction import iter_batches, open_tile_reader
from slidestream.extraction.device_feed import DeviceFeeder
from slidestream.pipeline.stages import SlideSource, run_tiles
from slidestream.store import SlideStore
from slidestream.tiling.params import TilingParams

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SLIDE = REPO.parent / "shared" / "slides" / "CMU-1-Small-Region.svs"


# ------------------------------------------------------------------ GPU utilisation
class UtilSampler:
    """Mean GPU utilisation (%) over a stage, sampled in a thread; None when it cannot be read."""

    def __init__(self, device: torch.device, period: float = 0.2) -> None:
        self.device, self.period = device, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:
            pass
        if shutil.which("nvidia-smi") is None:
            return None
        index = self.device.index or 0
        try:
            out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=2)
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def __enter__(self) -> UtilSampler:
        if self.device.type == "cuda":
            def loop() -> None:
                while not self._stop.wait(self.period):
                    value = self._read()
                    if value is None:
                        return
                    self.samples.append(value)
            self._thread = threading.Thread(target=loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ models
def smoke_models(device: torch.device) -> list[tuple[str, Encoder]]:
    """Tiny random-init stand-ins with the real models' preprocessing, so --smoke runs anywhere fast."""
    import timm

    torch.manual_seed(0)
    vit = timm.models.VisionTransformer(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2, num_classes=0)
    cnn = timm.create_model("resnet18", pretrained=False, num_classes=0)
    out = []
    for label, base, model, dim in (("tiny ViT/16 (smoke)", "uni", vit, 64), ("resnet18 (smoke)", "resnet50-trunc", cnn, 512)):
        spec = replace(get_spec(base), name=label, embed_dim=dim, builder=lambda m=model: m)
        out.append((label, Encoder(spec, model.eval().to(device), device=device, precision="fp32", weights_path=None,
                                   weights_sha256="random-init")))
    return out


def real_models(device: torch.device, precision: str) -> list[tuple[str, Encoder]]:
    return [(f"{name} ({label}, {precision})", load_encoder(name, random_init=True, device=str(device), precision=precision,
                                                          channels_last=name.startswith("resnet")))
            for name, label in (("uni", "ViT-L/16"), ("resnet50-trunc", "ResNet50"))]


# ------------------------------------------------------------------ stages
def timed(seconds: float, step: Any, device: torch.device) -> tuple[float, int, float | None]:
    """Run ``step()`` (returns tiles done) until ``seconds`` pass; (tiles/s, tiles, mean GPU %)."""
    with UtilSampler(device) as util:
        sync(device)
        start, tiles = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            tiles += step()
        sync(device)
        elapsed = time.perf_counter() - start
    return tiles / elapsed, tiles, util.mean


def read_rate(reader: Any, coords: np.ndarray, batch: int, seconds: float, device: torch.device):
    def one_pass() -> int:
        done = 0
        start = time.perf_counter()
        for _, tiles in iter_batches(reader, coords, batch, prefetch=4):
            done += len(tiles)
            if time.perf_counter() - start > seconds:
                break
        return done
    return timed(seconds, one_pass, device)


def forward_rate(encoder: Encoder, tile: np.ndarray, batch: int, seconds: float):
    dev = torch.from_numpy(np.ascontiguousarray(np.repeat(tile[None], batch, 0))).to(encoder.device)
    encoder.embed(encoder.preprocess(dev))   # warm-up (cuDNN autotune, allocator)

    def step() -> int:
        encoder.embed(encoder.preprocess(dev))
        return batch
    return timed(seconds, step, encoder.device)


def pipeline_rate(encoder: Encoder, reader: Any, coords: np.ndarray, batch: int, seconds: float):
    feeder = DeviceFeeder(encoder, buffers=4)
    list(feeder.run(iter([(0, reader.read_batch(coords[:batch]))])))   # warm-up

    def one_pass() -> int:
        done, start = 0, time.perf_counter()
        for _, feats in feeder.run(iter_batches(reader, coords, batch, prefetch=4)):
            if not np.isfinite(feats).all():
                raise SystemExit("non-finite features")
            done += len(feats)
            if time.perf_counter() - start > seconds:
                break
        return done
    return timed(seconds, one_pass, encoder.device)


def fmt(rate: float, util: float | None) -> str:
    return f"{rate:10.1f} tiles/s   GPU util {'n/a' if util is None else f'{util:5.1f} %'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--precision", default=None, help="default: bf16 on cuda, fp32 elsewhere")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 128 (4 with --smoke)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=None, help="per stage; default 20 (1 with --smoke)")
    ap.add_argument("--default-mpp", type=float, default=0.25, help="for slides without an mpp")
    ap.add_argument("--smoke", action="store_true", help="tiny models and short stages: checks the script on CPU")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    batch = args.batch_size or (4 if args.smoke else 128)
    seconds = args.seconds or (1.0 if args.smoke else 20.0)
    if not args.slide.exists():
        print(f"error: {args.slide}: no such slide (pass --slide)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, precision {precision}, batch {batch}, "
          f"{args.workers} reader threads, {seconds:g} s per stage, slide {args.slide.name}")

    with tempfile.TemporaryDirectory() as tmp:
        source = SlideSource(args.slide, default_mpp=args.default_mpp)
        t0 = time.perf_counter()
        run_tiles(source, Path(tmp), TilingParams(mpp=0.5, tile_size=224), write_images=False)
        store = SlideStore.open(Path(tmp) / f"{source.slide_id}.zarr")
        tiles = store.read_tiles()
        coords = tiles.coords
        print(f"tiling: {len(coords)} tiles of 224 px at 0.5 um/px in {time.perf_counter() - t0:.1f} s")
        if len(coords) < 2000:
            print("note: a small slide; its JPEG tiles stay in the decoded-tile cache across passes, so read rates "
                  "are optimistic: pass --slide with a real WSI (or a mosaic from benchmarks/make_slides.py)")
        # one long pass (tiles repeated) rather than many short ones restarting the reader thread
        coords = np.resize(coords, (max(len(coords), 4096), 2))
        if len(coords) < batch:
            print(f"error: {args.slide.name} has {len(coords)} tiles, fewer than a batch of {batch}", file=sys.stderr)
            return 2
        with source.open() as slide:
            spec = slide.spec
        reader = open_tile_reader(spec, tiles.attrs, workers=args.workers)
        try:
            rate, n, util = read_rate(reader, coords, batch, seconds, device)
            print(f"read-only  [{reader.name}] {fmt(rate, util)}   ({n} tiles)")
            models = smoke_models(device) if args.smoke else real_models(device, precision)
            tile = reader.read_batch(coords[:1])[0]
            for label, encoder in models:
                f_rate, _, f_util = forward_rate(encoder, tile, batch, seconds)
                p_rate, _, p_util = pipeline_rate(encoder, reader, coords, batch, seconds)
                print(f"{label}\n  forward-only {fmt(f_rate, f_util)}\n  pipeline     {fmt(p_rate, p_util)}"
                      f"\n  pipeline / forward-only = {p_rate / f_rate:.2f}"
                      f"{'   (target >= 0.9 for ViT-L/16 bf16)' if 'ViT-L' in label else ''}")
                del encoder
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        finally:
            reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
