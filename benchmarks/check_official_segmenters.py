"""One-off fidelity check against TRIDENT's own segmenter classes (not a test: needs a checkout).

Imports ``trident/segmentation_models/load.py`` from a local TRIDENT checkout (only its
``trident.IO`` helpers are stubbed, to point ``get_weights_path`` at random-weights files in each
release's layout), builds TRIDENT's ``HESTSegmenter``, ``GrandQCSegmenter`` and
``GrandQCArtifactSegmenter`` with their own code, and compares, on the same real tile of
CMU-1-Small-Region and the same weights file:

- the logits of TRIDENT's ``model`` on TRIDENT's ``eval_transforms`` of the tile vs ours
  (``tissue.models.preprocess`` + ``logits`` on our strictly loaded module);
- TRIDENT's decisions (``forward``: uint8 masks) vs ours (``decide_tissue`` / artifact argmax).

Besides ``trident.IO``, one patch: torchvision's ImageNet backbone download (see below).

    git -C <TRIDENT mirror> archive HEAD trident/segmentation_models | tar -x -C /tmp/trident_src
    PYTHONPATH=src python benchmarks/check_official_segmenters.py /tmp/trident_src
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from slidestream.io import open_slide
from slidestream.tissue.models import SPECS, decide_artifacts, decide_tissue, logits, preprocess
from slidestream.tissue.seg_weights import build_model, save_release

CMU = Path(__file__).resolve().parents[1].parent / "shared" / "slides" / "CMU-1-Small-Region.svs"


def main(trident_root: str) -> int:
    folder = Path(tempfile.mkdtemp())
    files = {}
    for name in SPECS:
        torch.manual_seed(7)
        files[name] = save_release(SPECS[name], SPECS[name].build(), folder / SPECS[name].weight_file)
    io = types.ModuleType("trident.IO")  # the only stub: where TRIDENT looks for its weights
    io.get_dir = lambda: str(folder)
    io.get_weights_path = lambda kind, name: str(files[{"hest": "hest", "grandqc": "grandqc",
                                                         "grandqc_artifact": "grandqc_artifact"}[name]])
    io.has_internet_connection = lambda: False
    package = types.ModuleType("trident")
    package.__path__ = [str(Path(trident_root) / "trident")]
    sys.modules["trident"], sys.modules["trident.IO"] = package, io
    # TRIDENT's deeplabv3_resnet50(weights=None) still asks for the ImageNet backbone (torchvision's
    # default weights_backbone), a download that its strict load then overwrites entirely. Offline,
    # the same architecture is built without it; nothing else of TRIDENT's is touched.
    import torchvision.models.segmentation as tv_seg

    original = tv_seg.deeplabv3_resnet50
    tv_seg.deeplabv3_resnet50 = lambda **kw: original(**{**kw, "weights_backbone": None})
    from trident.segmentation_models.load import (
        GrandQCArtifactSegmenter,
        GrandQCSegmenter,
        HESTSegmenter,
    )

    with open_slide(CMU) as slide:
        tile = slide.read_at_mpp(0, 1000, 1.0, 512)
    worst = 0.0
    for name, cls in (("hest", HESTSegmenter), ("grandqc", GrandQCSegmenter), ("grandqc_artifact", GrandQCArtifactSegmenter)):
        theirs = cls()
        spec = SPECS[name]
        ours, sha, _ = build_model(spec, files[name])
        x_theirs = theirs.eval_transforms(Image.fromarray(tile)).unsqueeze(0)
        x_ours = torch.from_numpy(preprocess(tile[None], spec))
        with torch.inference_mode():
            z_theirs = theirs.model(x_theirs)
            z_theirs = z_theirs["out"] if isinstance(z_theirs, dict) else z_theirs
            z_ours = logits(ours, x_ours, spec)
            d_theirs = theirs(x_theirs).numpy()
            d_ours = (decide_tissue(z_ours, spec, 0.5) if name != "grandqc_artifact"
                      else decide_artifacts(z_ours) <= 1).numpy().astype(np.uint8)
        input_diff = float((x_theirs - x_ours).abs().max())
        logit_diff = float((z_theirs - z_ours).abs().max())
        agree = float((d_theirs == d_ours).mean())
        worst = max(worst, logit_diff)
        print(f"{name:17s} sha {sha[:12]}  max |input diff| {input_diff:.2e}  max |logit diff| {logit_diff:.2e}  "
              f"decision agreement {agree:.6f}  tissue share {d_ours.mean():.3f}")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/trident_src"))
