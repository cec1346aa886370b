"""Independent references for the slide foundation encoder tests (plain tensor maths from the
official formulas; they read the weights from a state dict and never call the project's modules)."""

from __future__ import annotations

import math

import numpy as np
import torch


def ln(x, sd, p, eps):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def lin(x, sd, p, bias=True):
    y = x @ sd[p + ".weight"].T
    return y + sd[p + ".bias"] if bias else y


def softmax_attention(q, k, v, bias=None):
    """Per head: softmax(q kᵀ / sqrt(d) + bias) v, written out; q (H, Lq, d)."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    return torch.softmax(logits, dim=-1) @ v


def mha(q_in, kv_in, sd, p, heads, bias=True):
    """nn.MultiheadAttention written out (in_proj split into q, k, v)."""
    dim = q_in.shape[-1]
    w = sd[p + ".in_proj_weight"]
    b = sd[p + ".in_proj_bias"] if bias else torch.zeros(3 * dim)
    q = q_in @ w[:dim].T + b[:dim]
    k = kv_in @ w[dim : 2 * dim].T + b[dim : 2 * dim]
    v = kv_in @ w[2 * dim :].T + b[2 * dim :]
    split = lambda t: t.reshape(t.shape[0], heads, -1).transpose(0, 1)  # noqa: E731
    o = softmax_attention(split(q), split(k), split(v)).transpose(0, 1).reshape(len(q_in), dim)
    return lin(o, sd, p + ".out_proj", bias)


def gated_scores(h, sd, p):
    a = torch.tanh(lin(h, sd, p + ".attention_a.0"))
    b = torch.sigmoid(lin(h, sd, p + ".attention_b.0"))
    return lin(a * b, sd, p + ".attention_c")[:, 0]


# --- TITAN -------------------------------------------------------------------------------
TITAN_SLOPES = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
                0.7071068, 0.3535534, 0.1767767, 0.0883883]  # ZOO.md §4.1, 12 heads


def titan_reference(sd, feats, coords, tile, depth, heads=12):
    """TITAN: python-dict grid (sum per cell, all-zero cells dropped), ALiBi by the formula."""
    cells: dict[tuple[int, int], torch.Tensor] = {}
    c0 = coords.min(0)
    for f, (x, y) in zip(feats, coords, strict=True):
        key = (int((x - c0[0]) // tile), int((y - c0[1]) // tile))
        cells[key] = cells.get(key, torch.zeros_like(f)) + f
    keys = sorted(k for k, v in cells.items() if bool((v != 0).any()))
    h = torch.stack([cells[k] for k in keys])
    h = torch.nn.functional.gelu(lin(h, sd, "patch_embed.0"))
    x = torch.cat([sd["cls_token"][0], h])
    n = len(x)
    bias = torch.zeros(heads, n, n)
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            d = math.dist(a, b)
            for hh in range(heads):
                bias[hh, i + 1, j + 1] = -TITAN_SLOPES[hh] * d
    for blk in range(depth):
        p = f"blocks.modules_list.{blk}"
        y = ln(x, sd, p + ".norm1", 1e-6)
        qkv = lin(y, sd, p + ".attn.qkv").reshape(n, 3, heads, -1).permute(1, 2, 0, 3)
        o = softmax_attention(qkv[0], qkv[1], qkv[2], bias).transpose(0, 1).reshape(n, -1)
        x = x + lin(o, sd, p + ".attn.proj")
        y = ln(x, sd, p + ".norm2", 1e-6)
        x = x + lin(torch.nn.functional.gelu(lin(y, sd, p + ".mlp.fc1")), sd, p + ".mlp.fc2")
    x = ln(x, sd, "norm", 1e-6)
    p = "attn_pool_contrastive"
    q = ln(sd[p + ".query"], sd, p + ".ln_q", 1e-5)
    kv = ln(x, sd, p + ".ln_k", 1e-5)
    return mha(q, kv, sd, p + ".attn", heads=8)[0]


# --- PRISM -------------------------------------------------------------------------------
def _geglu_ff(x, sd, p):
    y = lin(ln(x, sd, p + ".norm", 1e-5), sd, p + ".net.0")
    a, gates = y.chunk(2, dim=-1)
    return lin(a * torch.nn.functional.gelu(gates), sd, p + ".net.2")


def prism_reference(sd, context, depth, tf_depth, heads):
    """Perceiver: cross-attention owned by layers 0 and 1 (1 reused after), transformer by 0."""
    x = sd["perceiver.latents"]
    for i in range(depth):
        px = f"perceiver.layers.{min(i, 1)}.xattn"
        q = lin(ln(x, sd, px + ".xattn.x_norm", 1e-5), sd, px + ".xattn.to_q", bias=False)
        k, v = lin(context, sd, px + ".xattn.to_kv", bias=False).chunk(2, dim=-1)
        x = x + lin(softmax_attention(q[None], k[None], v[None])[0], sd, px + ".xattn.to_out", False)
        x = x + _geglu_ff(x, sd, px + ".ff")
        for j in range(tf_depth):
            pt = f"perceiver.layers.0.tf.{j}"
            y = ln(x, sd, pt + ".mhsa.norm", 1e-5)
            x = x + mha(y, y, sd, pt + ".mhsa.mha", heads, bias=False)
            x = x + _geglu_ff(x, sd, pt + ".ff")
    return ln(x[0], sd, "cls_norm", 1e-5)


# --- LongNet dilated attention -------------------------------------------------------------
def dilated_reference(q, k, v, segments, ratios):
    """torchscale semantics per query, with explicit loops (q, k, v: (L, H, d) numpy, float64).

    Branch (sl, r): sl' = min(sl, L); the query at p is in segment s = p // sl' at offset o;
    head h belongs to group h // (H/r) and sees the branch only if o % r equals its group; its
    keys are offsets g, g+r, ... of the segment padded to a multiple of r, a key beyond the
    sequence or the segment being a zero vector (logit 0, value 0). Branches merge with weights
    softmax over their log-sum-exp. (Segment lengths here are multiples of r, as the reference
    needs for exact positions when a sequence spans several segments.)
    """
    length, heads, d = q.shape
    out = np.zeros((length, heads, d))
    for p in range(length):
        for h in range(heads):
            lses, outs = [], []
            for sl, r in zip(segments, ratios, strict=True):
                slc = min(sl, length)
                s, o = divmod(p, slc)
                g = h // (heads // r)
                if o % r != g:
                    continue
                seg = math.ceil(slc / r) * r
                keys, vals = [], []
                for oo in range(g, seg, r):
                    pos = s * slc + oo
                    real = oo < slc and pos < length
                    keys.append(k[pos, h] if real else np.zeros(d))
                    vals.append(v[pos, h] if real else np.zeros(d))
                logits = np.array(keys) @ q[p, h] / math.sqrt(d)
                m = logits.max()
                lse = m + math.log(np.exp(logits - m).sum())
                lses.append(lse)
                outs.append(np.exp(logits - lse) @ np.array(vals))
            w = np.exp(np.array(lses) - max(lses))
            w /= w.sum()
            out[p, h] = sum(wi * oi for wi, oi in zip(w, outs, strict=True))
    return out


def mae_sincos_table(dim, grid):
    """MAE get_2d_sincos_pos_embed (cls row of zeros first), with numpy meshgrid as MAE does."""
    gh = np.arange(grid, dtype=np.float32)
    gw = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(gw, gh), 0).reshape(2, -1)

    def one(pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], 1)

    table = np.concatenate([one(mesh[0]), one(mesh[1])], 1)
    return np.concatenate([np.zeros((1, dim)), table]).astype(np.float32)
