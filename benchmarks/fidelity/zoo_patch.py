"""Fidelity of the issue-16 patch encoders against their official constructions.

For each family: random weights are written in the official file layout, loaded through
``slidestream.encoders.load_encoder(weights=...)`` (strict), and the embedding is compared with
the one the official construction gives on the same file and the same input. The official code is
imported from a folder of fetched sources (``--ref``), never copied into the project:

    --ref/dinov2/                OpenMidnight's DINOv2 (MedARC-AI/OpenMidnight: dinov2/)
    --ref/trident_src/trident/   TRIDENT model_zoo (conchv1_5, ctranspath, genbio_pathfm)
    --ref/genbio_pathfm/         genbio-ai/genbio-pathfm: genbio_pathfm/
    --ref/transpath/ctran.py     Xiyue-Wang/TransPath: ctran.py
    --transformers DIR           a transformers 4.x install (Midnight's AutoModel path)

Models above 1B parameters are compared at reduced depth (same code paths, fewer blocks), which
keeps the check within a laptop's memory. Prints one line per model: max |diff| and cosine.
CTransPath's reference runs in a subprocess on timm 0.5.4 (``--timm05``, a ``pip install --target``
folder); TransPath's patched timm is not on PyPI, so its ``ConvStem`` is put in place of the stock
``PatchEmbed`` with the arguments the patch passes. CONCH v1.5's reference needs ``einops`` and
``einops_exts`` on the path. Last results: benchmarks/results/zoo_patch_fidelity.txt.

Run: PYTHONPATH=src:. python benchmarks/fidelity/zoo_patch.py --ref DIR --transformers DIR [names...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from slidestream.encoders import get_spec, load_encoder
from slidestream.encoders.pooling import pool
from slidestream.encoders.weights import build_with_weights

CHECKS: dict[str, Callable[[Path, Path], tuple[torch.Tensor, torch.Tensor]]] = {}


def check(fn: Callable[[Path, Path], tuple[torch.Tensor, torch.Tensor]]):
    CHECKS[fn.__name__.removeprefix("check_").replace("_", "-")] = fn
    return fn


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                noise = torch.randn(p.shape, generator=g) * 0.05
                p.copy_(
                    noise
                    + (
                        1.0
                        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight"))
                        else 0.0
                    )
                )


def _input(size: int, n: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(1))


def _ours(name: str, path: Path, x: torch.Tensor, model=None) -> torch.Tensor:
    spec = get_spec(name)
    if model is None:
        model = load_encoder(name, weights=path).model
    with torch.inference_mode():
        return pool(model.eval()(x), spec)


def _timm_official(arch: str, path: Path, **kw) -> torch.nn.Module:
    """timm's pretrained path with the file in place of the URL (kaiko hubconf)."""
    return timm.create_model(
        arch, pretrained=True, pretrained_cfg_overlay={"file": str(path), "num_classes": 0}, **kw
    ).eval()


def _kaiko(name: str, arch: str, tmp: Path, grid: int | None = None):
    model = timm.create_model(
        arch, pretrained=False, num_classes=0, **({"img_size": grid * 14} if grid else {})
    ).eval()
    _randomise(model)
    path = tmp / f"{name}.pth"
    torch.save(model.state_dict(), path)
    official = _timm_official(arch, path, dynamic_img_size=True)
    x = _input(224)
    with torch.inference_mode():
        want = official(x)
    return _ours(name, path, x), want


for _name, _arch in (
    ("kaiko-vits16", "vit_small_patch16_224"),
    ("kaiko-vits8", "vit_small_patch8_224"),
    ("kaiko-vitb16", "vit_base_patch16_224"),
    ("kaiko-vitb8", "vit_base_patch8_224"),
    ("kaiko-vitl14", "vit_large_patch14_reg4_dinov2"),
):
    CHECKS[_name] = (lambda n, a: lambda ref, tmp: _kaiko(n, a, tmp))(_name, _arch)
# The L/14 release file's grid is unknown: a 224-px (16x16) table must be upsampled at load and
# downsampled at run time exactly as timm's pretrained path does.
CHECKS["kaiko-vitl14@16x16-file"] = lambda ref, tmp: _kaiko(
    "kaiko-vitl14", "vit_large_patch14_reg4_dinov2", tmp, grid=16
)


@check
def check_lunit_dino_vits8(ref: Path, tmp: Path):
    from timm.models.vision_transformer import VisionTransformer

    official = VisionTransformer(
        img_size=224, patch_size=8, embed_dim=384, num_heads=6, num_classes=0
    ).eval()
    _randomise(official)
    path = tmp / "dino_vit_small_patch8_ep200.torch"
    torch.save(official.state_dict(), path)
    official.load_state_dict(torch.load(path))  # the README's strict load
    x = _input(224)
    with torch.inference_mode():
        return _ours("lunit-dino-vits8", path, x), official(x)


@check
def check_gpfm(ref: Path, tmp: Path):
    official = timm.create_model(
        "vit_large_patch14_dinov2.lvd142m",
        pretrained=False,
        img_size=224,
        init_values=1e-5,
        dynamic_img_size=True,
    ).eval()
    _randomise(official)
    path = tmp / "GPFM.pth"
    torch.save(official.state_dict(), path)
    official.load_state_dict(torch.load(path), strict=True)
    x = _input(224)
    with torch.inference_mode():
        return _ours("gpfm", path, x), official(x)


@check
def check_mstar(ref: Path, tmp: Path):
    official = timm.create_model(
        "vit_large_patch16_224",
        img_size=224,
        patch_size=16,
        init_values=1e-5,
        num_classes=0,
        dynamic_img_size=True,
    ).eval()
    _randomise(official)
    path = tmp / "mSTAR.pth"
    torch.save(official.state_dict(), path)
    x = _input(224)
    with torch.inference_mode():
        return _ours("mstar", path, x), official(x)


def _h0(tmp: Path, name: str):
    official = timm.create_model(
        "vit_base_patch14_reg4_dinov2",
        pretrained=False,
        img_size=224,
        mlp_ratio=5.33334,
        global_pool="",
        num_classes=0,
        mlp_layer=timm.layers.SwiGLUPacked,
        act_layer=torch.nn.SiLU,
    ).eval()
    _randomise(official)
    path = tmp / "model.safetensors"
    save_file({k: v.contiguous() for k, v in official.state_dict().items()}, path)
    x = _input(224)
    with torch.inference_mode():
        out = official(x)
    want = (
        out[:, 0]
        if name.endswith("-cls")
        else torch.cat((out[:, 0], out[:, official.num_prefix_tokens :].mean(1)), -1)
    )
    return _ours(name, path, x), want


CHECKS["h0-mini-cls"] = lambda ref, tmp: _h0(tmp, "h0-mini-cls")
CHECKS["h0-mini-cls-mean"] = lambda ref, tmp: _h0(tmp, "h0-mini-cls-mean")


@check
def check_openmidnight(ref: Path, tmp: Path):
    """DINOv2 hub ``dinov2_vitg14_reg`` (3 blocks), 257-token table, TRIDENT's load recipe."""
    import os

    os.environ["XFORMERS_DISABLED"] = "1"
    sys.path.insert(0, str(ref))
    from dinov2.hub.backbones import dinov2_vitg14_reg
    from dinov2.models import vision_transformer as vits

    original = vits.DinoVisionTransformer
    vits.DinoVisionTransformer = lambda **kw: original(**{**kw, "depth": 3})
    try:
        official = dinov2_vitg14_reg(pretrained=False).eval()
    finally:
        vits.DinoVisionTransformer = original
    official.pos_embed = torch.nn.Parameter(torch.zeros(1, 257, 1536))  # trained at 224
    _randomise(official)
    path = tmp / "teacher_checkpoint_load.pt"
    torch.save(official.state_dict(), path)
    ckpt = torch.load(path)
    official.pos_embed = torch.nn.Parameter(ckpt["pos_embed"])
    official.load_state_dict(ckpt, strict=True)
    ours = _reduced("openmidnight", path, depth=3)
    x = _input(224)
    with torch.inference_mode():
        return _ours("openmidnight", path, x, ours), official(x)


def _reduced(name: str, path: Path, **overrides) -> torch.nn.Module:
    """``build_with_weights`` with a reduced-depth builder (same code, fewer blocks)."""
    from dataclasses import replace

    spec = get_spec(name)
    small = replace(spec, builder=lambda: spec.builder(**overrides))
    return build_with_weights(small, path).eval()


@check
def check_midnight_12k_cls_mean(ref: Path, tmp: Path):
    """transformers ``Dinov2Model`` (3 layers, image_size 518, SwiGLU) via AutoModel."""
    from transformers import AutoModel, Dinov2Config, Dinov2Model

    cfg = Dinov2Config(
        hidden_size=1536,
        num_hidden_layers=3,
        num_attention_heads=24,
        patch_size=14,
        image_size=518,
        use_swiglu_ffn=True,
        layer_norm_eps=1e-6,
        mlp_ratio=4,
    )
    model = Dinov2Model(cfg).eval()
    _randomise(model)
    folder = tmp / "midnight"
    model.save_pretrained(folder)
    official = AutoModel.from_pretrained(folder).eval()
    ours = _reduced("midnight-12k-cls-mean", folder / "model.safetensors", num_layers=3)
    x = _input(224)
    with torch.inference_mode():
        h = official(pixel_values=x).last_hidden_state
    return _ours("midnight-12k-cls-mean", folder, x, ours), torch.cat(
        (h[:, 0], h[:, 1:].mean(1)), -1
    )


def _import_trident(ref: Path):
    """TRIDENT's CONCH v1.5 module, imported from the fetched source tree (needs einops_exts)."""
    sys.path.insert(0, str(ref / "trident_src"))
    import importlib

    return importlib.import_module("trident.patch_encoder_models.model_zoo.conchv1_5.conchv1_5")


@check
def check_conch_v1_5(ref: Path, tmp: Path):
    """TRIDENT ``create_model_from_pretrained`` on a 197-token file, at 448 px (and 224 px)."""
    mod = _import_trident(ref)
    tower = mod.CONCHVisionTower().eval()
    _randomise(tower)
    path = tmp / "pytorch_model_vision.bin"
    torch.save(tower.state_dict(), path)
    official, _ = mod.create_model_from_pretrained(str(path))
    official.eval()
    x = _input(448)
    with torch.inference_mode():
        want = official(x)
    return _ours("conch-v1.5", path, x), want


@check
def check_conch_v1_5_at_785_tokens(ref: Path, tmp: Path):
    """A file whose pos_embed is on the 28x28 grid: resized at load, re-interpolated at run time."""
    mod = _import_trident(ref)
    tower = mod.CONCHVisionTower().eval()
    _randomise(tower)
    state = tower.state_dict()
    state["trunk.pos_embed"] = (
        torch.randn(1, 785, 1024, generator=torch.Generator().manual_seed(3)) * 0.05
    )
    path = tmp / "pytorch_model_vision.bin"
    torch.save(state, path)
    official, _ = mod.create_model_from_pretrained(str(path))
    x = _input(448)
    with torch.inference_mode():
        want = official.eval()(x)
    return _ours("conch-v1.5", path, x), want


@check
def check_genbio_pathfm(ref: Path, tmp: Path):
    """genbio_pathfm ``GenBio_PathFM_Inference`` (3 blocks), checkpoint ``model.pth``."""
    sys.path.insert(0, str(ref))
    from genbio_pathfm import model as gb

    original = gb.VisionTransformer
    gb.VisionTransformer = lambda **kw: original(**{**kw, "depth": 3})
    try:
        ref_vit = gb.VisionTransformer(
            img_size=224,
            patch_size=16,
            embed_dim=1536,
            num_heads=24,
            ffn_ratio=4,
            in_chans=1,
            n_storage_tokens=4,
            ffn_layer="swiglu64",
            layerscale_init=1.0e-5,
            qkv_bias=False,
        )
        ref_vit.rope_embed._init_weights()
        _randomise(ref_vit)
        path = tmp / "model.pth"
        torch.save(ref_vit.state_dict(), path)
        official = gb.GenBio_PathFM_Inference(str(path), device="cpu").eval()
    finally:
        gb.VisionTransformer = original
    ours = _reduced("genbio-pathfm", path, depth=3)
    x = _input(224)
    with torch.inference_mode():
        return _ours("genbio-pathfm", path, x, ours), official(x)


@check
def check_ctranspath(ref: Path, tmp: Path):
    """TransPath ``ctranspath()`` on timm 0.5.4 (``--timm05`` folder), file {'model': state}."""
    code = f"""
import sys, torch
sys.path.insert(0, {str(TIMM05)!r}); sys.path.insert(0, {str(ref / "transpath")!r})
import timm
assert timm.__version__ == '0.5.4', timm.__version__
import timm.models.swin_transformer as sw
from ctran import ConvStem
# TransPath's patched timm passes embed_layer to SwinTransformer; stock 0.5.4 builds the same
# network with PatchEmbed, so the stem is swapped in with the arguments the patch passes.
m = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False)
m.patch_embed = ConvStem(img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=torch.nn.LayerNorm)
m.head = torch.nn.Identity()
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for k, p in m.state_dict().items():
        if p.is_floating_point() and 'attn_mask' not in k:
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if k.endswith('norm.weight') or k.endswith(('norm1.weight', 'norm2.weight')) else 0.0))
        if k.endswith('running_var'):
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
torch.save({{'model': m.state_dict()}}, sys.argv[1])
m.load_state_dict(torch.load(sys.argv[1])['model'], strict=True)
m.eval()
x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    torch.save(m(x), sys.argv[2])
"""
    import subprocess

    path, out = tmp / "ctranspath.pth", tmp / "want.pt"
    subprocess.run([sys.executable, "-c", code, str(path), str(out)], check=True)
    return _ours("ctranspath", path, _input(224)), torch.load(out)


TIMM05 = Path("/tmp/zp/timm05")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--transformers", type=Path, default=None)
    parser.add_argument("--timm05", type=Path, default=TIMM05, help="a timm==0.5.4 install")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    if args.transformers:
        sys.path.insert(0, str(args.transformers))
    globals()["TIMM05"] = args.timm05
    torch.manual_seed(0)
    bad = 0
    for name, fn in CHECKS.items():
        if args.names and name not in args.names:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            ours, want = fn(args.ref, Path(tmp))
        diff = (ours - want).abs().max().item()
        cos = (
            torch.nn.functional.cosine_similarity(ours.double(), want.double(), dim=-1).min().item()
        )
        ok = ours.shape == want.shape and torch.allclose(ours, want, rtol=1e-4, atol=1e-4)
        bad += not ok
        print(
            f"{name:28s} shape {tuple(ours.shape)} max|diff| {diff:.2e} cosine {cos:.8f} {'OK' if ok else 'MISMATCH'}",
            flush=True,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
