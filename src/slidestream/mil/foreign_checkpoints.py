"""MIL checkpoints saved by the original implementations, mapped key by key onto our models.

Recognised from their keys (:func:`detect`), renamed (:func:`convert`) and loaded *strictly*, so a
missing, extra or mis-shaped tensor is an error naming it, never a silently half-loaded model:

=================  ======================================================  ======================
source             official keys (examples)                                 our model
=================  ======================================================  ======================
CLAM-SB            ``attention_net.0``, ``attention_net.3.attention_a.0``,  ``clam_sb``
(mahmoodlab/CLAM)  ``…attention_b.0``, ``…attention_c``, ``classifiers``,
                   ``instance_classifiers.<c>``
CLAM-MB            as SB, ``classifiers.<c>`` (one ``Linear(512, 1)`` each) ``clam_mb``
TransMIL           ``_fc1.0``, ``cls_token``, ``layer<i>.attn.to_qkv`` …,    ``transmil``
(szc19990412)      ``pos_layer.proj|proj1|proj2``, ``norm``, ``_fc2``
DSMIL              ``i_classifier.fc.0``, ``b_classifier.q.0|2``,            ``dsmil``
(binli123)         ``b_classifier.v.1`` (passing_v), ``b_classifier.fcc``
ABMIL (MIL-Lab)    ``patch_embed.0``, ``global_attn.attention_a.0`` …,      ``abmil_gated`` /
                   ``global_attn.module.0|3``, ``classifier``               ``abmil``
=================  ======================================================  ======================

Also accepted: the ``module.`` of ``DataParallel`` (CLAM wraps ``attention_net`` in it on several
GPUs), CLAM's ``instance_loss_fn.*`` buffers (dropped as CLAM's own evaluation does), Lightning's ``{"state_dict": {"model.…"}}`` wrapper (how
TransMIL's training saves), and CLAM's older layout without the first dropout
(``attention_net.2``). A one-output (BCE) DSMIL becomes a two-class model whose logits are
``[0, z]``, so ``softmax`` gives the official ``sigmoid(z)`` exactly and the tile scores are the
official attention. Several-class DSMIL keeps the official logits; the official scripts read them
with a sigmoid per class, ``predict`` with a softmax (same ranking and argmax, other numbers).

AttentionDeepMIL (Ilse et al.) is not accepted: its checkpoints hold a LeNet pixel feature
extractor for MNIST bags, which has no counterpart on tile features.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from slidestream.errors import ConfigError

SOURCES = ("clam_sb", "clam_mb", "transmil", "dsmil", "abmil_mil_lab")
_CLAM_SIZES = {256: "small", 384: "big"}


def clean_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The bare state dict: Lightning wrapper unpacked, ``model.``/``module.`` prefixes and CLAM's
    ``attention_net.module.`` removed, CLAM's loss buffers dropped."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor) or "instance_loss_fn" in key:
            continue
        key = re.sub(r"^attention_net\.module\.", "attention_net.", key)  # CLAM's DataParallel wrap
        for prefix in ("module.", "model."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def detect(state: Mapping[str, Tensor]) -> str | None:
    """Which original implementation wrote ``state`` (see :data:`SOURCES`), or None."""
    keys = set(state)
    if any(re.match(r"attention_net\.\d+\.attention_a\.0\.weight$", k) for k in keys):
        return "clam_mb" if "classifiers.0.weight" in keys else "clam_sb"
    if "_fc1.0.weight" in keys and "pos_layer.proj.weight" in keys:
        return "transmil"
    if "i_classifier.fc.0.weight" in keys and "b_classifier.fcc.weight" in keys:
        return "dsmil"
    if "patch_embed.0.weight" in keys and any(k.startswith("global_attn.") for k in keys):
        return "abmil_mil_lab"
    return None


def convert(state: Mapping[str, Tensor], source: str | None = None, *, where: Any = None
            ) -> tuple[str, dict[str, Any], int, int, dict[str, Tensor]]:
    """``(model name, hparams, in_dim, n_classes, our state dict)`` for an official state dict."""
    source = source or detect(state)
    if source is None:
        raise ConfigError(where, "not a checkpoint of a known MIL implementation "
                                 f"({', '.join(SOURCES)}); first keys: {', '.join(list(state)[:4])}")
    if source not in SOURCES:
        raise ConfigError(where, f"unknown checkpoint source {source!r}; known: {', '.join(SOURCES)}")
    return {"clam_sb": _clam, "clam_mb": _clam, "transmil": _transmil, "dsmil": _dsmil,
            "abmil_mil_lab": _abmil}[source](dict(state), source, where)


def _rename(state: dict[str, Tensor], rules: list[tuple[str, str]], where: Any) -> dict[str, Tensor]:
    """Every key through the first matching regex rule; a key no rule matches is an error."""
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise ConfigError(where, f"unexpected key {key!r} for this checkpoint layout")
    return out


def _clam(state: dict[str, Tensor], source: str, where: Any):
    attn = next(re.match(r"attention_net\.(\d+)\.", k).group(1) for k in state  # type: ignore[union-attr]
                if re.match(r"attention_net\.\d+\.attention_a", k))
    rules = [
        (r"attention_net\.0\.(weight|bias)", r"embed.0.\1"),
        (rf"attention_net\.{attn}\.attention_a\.0\.(weight|bias)", r"attention.tanh_branch.0.\1"),
        (rf"attention_net\.{attn}\.attention_b\.0\.(weight|bias)", r"attention.gate.0.\1"),
        (rf"attention_net\.{attn}\.attention_c\.(weight|bias)", r"attention.w.\1"),
        (r"instance_classifiers\.(\d+)\.(weight|bias)", r"instance_classifiers.\1.\2"),
        (r"classifiers\.(weight|bias)", r"classifier.\1") if source == "clam_sb"
        else (r"classifiers\.(\d+)\.(weight|bias)", r"classifiers.\1.\2"),
    ]
    ours = _rename(state, rules, where)
    embed, in_dim = ours["embed.0.weight"].shape
    attn_dim = ours["attention.tanh_branch.0.weight"].shape[0]
    if embed != 512 or attn_dim not in _CLAM_SIZES:
        raise ConfigError(where, f"CLAM with hidden sizes {embed}/{attn_dim}: only small (512/256) and big "
                                 "(512/384) exist in CLAM and here")
    n_classes = sum(1 for k in ours if k.startswith("instance_classifiers.") and k.endswith(".weight"))
    return source, {"size": _CLAM_SIZES[attn_dim]}, int(in_dim), n_classes, ours


def _transmil(state: dict[str, Tensor], source: str, where: Any):
    layer = r"(layer[12])\.(norm\.(?:weight|bias)|attn\.to_qkv\.weight|attn\.to_out\.0\.(?:weight|bias)|attn\.res_conv\.weight)"
    rules = [
        (r"_fc1\.0\.(weight|bias)", r"embed.0.\1"),
        (r"cls_token", "cls_token"),
        (layer, r"\1.\2"),
        (r"pos_layer\.proj\.(weight|bias)", r"ppeg.convs.0.\1"),
        (r"pos_layer\.proj1\.(weight|bias)", r"ppeg.convs.1.\1"),
        (r"pos_layer\.proj2\.(weight|bias)", r"ppeg.convs.2.\1"),
        (r"norm\.(weight|bias)", r"norm.\1"),
        (r"_fc2\.(weight|bias)", r"classifier.\1"),
    ]
    ours = _rename(state, rules, where)
    dim, in_dim = ours["embed.0.weight"].shape
    heads = ours["layer1.attn.res_conv.weight"].shape[0]
    return source, {"dim": int(dim), "heads": int(heads)}, int(in_dim), int(ours["classifier.weight"].shape[0]), ours


def _dsmil(state: dict[str, Tensor], source: str, where: Any):
    rules = [
        (r"i_classifier\.fc\.0\.(weight|bias)", r"instance_classifier.\1"),
        (r"b_classifier\.q\.(\d+)\.(weight|bias)", r"q.\1.\2"),
        (r"b_classifier\.q\.(weight|bias)", r"q.\1"),
        (r"b_classifier\.v\.1\.(weight|bias)", r"v.1.\1"),
        (r"b_classifier\.fcc\.(weight|bias)", r"bag_classifier.\1"),
    ]
    ours = _rename(state, rules, where)
    n_classes, in_dim = ours["instance_classifier.weight"].shape
    nonlinear = "q.0.weight" in ours
    query_dim = ours["q.0.weight" if nonlinear else "q.weight"].shape[0]
    hparams = {"query_dim": int(query_dim), "nonlinear": nonlinear, "passing_v": "v.1.weight" in ours}
    if n_classes == 1:  # BCE with one output -> two classes with logits [0, z]
        ours = _dsmil_binary(ours)
        n_classes = 2
    return source, hparams, int(in_dim), int(n_classes), ours


def _dsmil_binary(ours: dict[str, Tensor]) -> dict[str, Tensor]:
    """Class 0 copies class 1's instance scores (same critical tile, same attention) and gets a
    zero bag logit; class 1 is the official output."""
    w, b = ours["instance_classifier.weight"], ours["instance_classifier.bias"]
    conv_w, conv_b = ours["bag_classifier.weight"], ours["bag_classifier.bias"]  # (1, 1, D), (1,)
    new_w = conv_w.new_zeros(2, 2, conv_w.shape[-1])
    new_w[1, 1] = conv_w[0, 0]
    return {**ours, "instance_classifier.weight": torch.cat([w, w]), "instance_classifier.bias": torch.cat([b, b]),
            "bag_classifier.weight": new_w, "bag_classifier.bias": torch.cat([conv_b.new_zeros(1), conv_b])}


def _abmil(state: dict[str, Tensor], source: str, where: Any):
    gated = any(k.startswith("global_attn.attention_b") for k in state)
    if any(re.match(r"patch_embed\.[1-9]\d*\.weight", k) for k in state):
        raise ConfigError(where, "MIL-Lab ABMIL with num_fc_layers > 1: only the one-layer patch embedding "
                                 "(the released default) maps onto abmil")
    rules = [(r"patch_embed\.0\.(weight|bias)", r"embed.0.\1"), (r"classifier\.(weight|bias)", r"classifier.\1")]
    if gated:
        rules += [(r"global_attn\.attention_a\.0\.(weight|bias)", r"attention.tanh_branch.0.\1"),
                  (r"global_attn\.attention_b\.0\.(weight|bias)", r"attention.gate.0.\1"),
                  (r"global_attn\.attention_c\.(weight|bias)", r"attention.w.\1")]
    else:
        rules += [(r"global_attn\.module\.0\.(weight|bias)", r"attention.tanh_branch.0.\1"),
                  (r"global_attn\.module\.3\.(weight|bias)", r"attention.w.\1")]
    ours = _rename(state, rules, where)
    embed, in_dim = ours["embed.0.weight"].shape
    attn_dim = ours["attention.tanh_branch.0.weight"].shape[0]
    name = "abmil_gated" if gated else "abmil"
    hparams = {"embed_dim": int(embed), "attn_dim": int(attn_dim)}
    return name, hparams, int(in_dim), int(ours["classifier.weight"].shape[0]), ours


def read_state(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``.pt``/``.pth``/``.ckpt`` (``weights_only``) or ``.safetensors`` file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return clean_state_dict(load_file(str(path)))
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(path, f"not a readable checkpoint: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(path, "not a state dict (a whole pickled model cannot be loaded safely)")
    return clean_state_dict(raw)


def build_foreign_model(state: Mapping[str, Tensor], source: str | None = None, *, where: Any = None):
    """Our model with the official weights loaded strictly; ``(model, name, hparams, in_dim, n_classes)``."""
    from slidestream.mil.models import get_model

    name, hparams, in_dim, n_classes, ours = convert(state, source, where=where)
    model = get_model(name, in_dim, n_classes, **hparams)
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        raise ConfigError(where, f"{source or detect(state)} weights do not fit {name}: {exc}") from None
    model.eval()
    return model, name, hparams, in_dim, n_classes
