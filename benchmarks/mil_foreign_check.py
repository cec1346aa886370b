"""Official MIL modules vs ours after key mapping, on random weights (issue 16 §3).

Builds each original implementation from its fetched source, saves its ``state_dict()`` as its
training code does, loads the file through :func:`slidestream.mil.checkpoint.load_checkpoint`
(strict key mapping, :mod:`slidestream.mil.foreign_checkpoints`) and compares the forward passes
on random bags. Needs the sources (not on CI: no network), e.g.::

    python benchmarks/mil_foreign_check.py --clam CLAM/ --transmil TransMIL/ --dsmil dsmil-wsi/ \\
        --mil-lab MIL-Lab/ [--extra-path dir-with-nystrom_attention-and-einops]

Writes ``benchmarks/results/mil_foreign_check.json`` (max absolute differences per model).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

import torch

from slidestream.mil.checkpoint import load_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def ours(state: dict, tmp: Path, name: str):
    path = tmp / f"{name}.pt"
    torch.save(state, path)
    return load_checkpoint(path).model


def check_clam(root: Path, tmp: Path) -> dict[str, float]:
    clam = load_module(root / "models" / "model_clam.py", "official_clam")
    out = {}
    for cls, size, n in ((clam.CLAM_SB, "small", 2), (clam.CLAM_SB, "big", 3), (clam.CLAM_MB, "small", 3)):
        ref = cls(gate=True, size_arg=size, dropout=0.25, n_classes=n, embed_dim=64).eval()
        model = ours(ref.state_dict(), tmp, "clam")
        for n_tiles in (1, 37):
            x = torch.randn(n_tiles, 64)
            with torch.no_grad():
                logits, _, _, a_raw, _ = ref(x)
                mine = model(x[None])
            key = f"{cls.__name__}-{size}-{n}cls-{n_tiles}tiles"
            attn = torch.softmax(a_raw, dim=1)
            ref_scores = attn[0] if cls is clam.CLAM_SB else attn[logits.argmax()]
            out[key] = max((logits - mine.logits).abs().max().item(), (ref_scores - mine.scores[0]).abs().max().item())
    return out


def check_transmil(root: Path, tmp: Path) -> dict[str, float]:
    torch.Tensor.cuda = lambda self, *a, **k: self  # the official forward calls .cuda()
    mod = load_module(root / "models" / "TransMIL.py", "official_transmil")
    out = {}
    ref = mod.TransMIL(n_classes=3).eval()
    model = ours({"state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}}, tmp, "transmil")
    for n_tiles in (1, 10, 300):
        x = torch.randn(1, n_tiles, 1024)
        with torch.no_grad():
            ref_logits = ref(data=x)["logits"]
            mine = model(x)
        out[f"TransMIL-{n_tiles}tiles"] = (ref_logits - mine.logits).abs().max().item()
    return out


def check_dsmil(root: Path, tmp: Path) -> dict[str, float]:
    mil = load_module(root / "dsmil.py", "official_dsmil")
    out = {}
    for n, nonlinear, passing_v in ((1, True, False), (3, True, False), (2, False, True)):
        ref = mil.MILNet(mil.FCLayer(64, n), mil.BClassifier(64, n, nonlinear=nonlinear, passing_v=passing_v)).eval()
        model = ours(ref.state_dict(), tmp, "dsmil")
        x = torch.randn(41, 64)
        with torch.no_grad():
            classes, bag, attn, _ = ref(x)
            mine = model(x[None])
        if n == 1:  # ours: two classes, logits [0, z]; softmax == official sigmoid
            diff = max((mine.logits[0, 1] - bag[0, 0]).abs().item(), mine.logits[0, 0].abs().item(),
                       (mine.scores[0] - attn[:, 0]).abs().max().item(),
                       (torch.softmax(mine.logits, 1)[0, 1] - torch.sigmoid(bag[0, 0])).abs().item())
        else:
            diff = max((mine.logits - bag).abs().max().item(),
                       (mine.extra["instance_logits"][0] - classes).abs().max().item(),
                       (mine.extra["attention"][0] - attn.T).abs().max().item())
        out[f"DSMIL-{n}cls-nonlinear{int(nonlinear)}-passingv{int(passing_v)}"] = diff
    return out


def check_mil_lab(root: Path, tmp: Path) -> dict[str, float]:
    stub = types.ModuleType("transformers")  # only the HF config wrappers need it
    for name in ("PretrainedConfig", "PreTrainedModel"):
        setattr(stub, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
    stub.AutoConfig = stub.AutoModel = types.SimpleNamespace(register=lambda *a, **k: None)
    sys.modules.setdefault("transformers", stub)
    sys.path.insert(0, str(root))
    from src.models.abmil import ABMIL  # type: ignore[import-not-found]

    out = {}
    for gate in (True, False):
        ref = ABMIL(in_dim=64, embed_dim=96, attn_dim=48, gate=gate, num_classes=3).eval()
        model = ours(ref.state_dict(), tmp, "abmil")
        x = torch.randn(2, 29, 64)
        with torch.no_grad():
            results, log = ref(x, return_attention=True)
            mine = model(x)
        attn = torch.softmax(log["attention"], dim=-1)[:, 0]
        out[f"MIL-Lab-ABMIL-gate{int(gate)}"] = max((results["logits"] - mine.logits).abs().max().item(),
                                                    (attn - mine.scores).abs().max().item())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("clam", "transmil", "dsmil", "mil-lab"):
        parser.add_argument(f"--{name}", type=Path)
    parser.add_argument("--extra-path", type=Path, action="append", default=[])
    args = parser.parse_args()
    sys.path[:0] = [str(p) for p in args.extra_path]
    torch.manual_seed(0)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for flag, fn in (("clam", check_clam), ("transmil", check_transmil), ("dsmil", check_dsmil),
                         ("mil_lab", check_mil_lab)):
            root = getattr(args, flag)
            if root is not None:
                results.update(fn(root, Path(tmp)))
    for key, diff in results.items():
        print(f"{key:<45} max |official - ours| = {diff:.2e}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mil_foreign_check.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
