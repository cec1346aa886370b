"""A built-in, weight-free baseline: colour, stain and texture statistics per tile.

Why it exists: every learned encoder here needs a gated or licensed download, so a fresh install
could otherwise extract nothing. This baseline runs everywhere, is deterministic, and gives a
floor that a learned encoder should beat; it also makes the whole extraction path testable
without weights. It is not meant to compete with the foundation models.

All statistics are computed in torch on the batch at once (the encoder's device, CPU or GPU), on
tiles resized to 224 px with values in [0, 1]. The colour transforms reproduce scikit-image's
definitions (``rgb2hed`` with ``hed_from_rgb``, ``rgb2hsv``, ``rgb2gray``) and the texture
block reproduces ``graycomatrix`` / ``graycoprops``; the tests compare each against scikit-image.
GLCM counting uses integer bincounts, so results do not depend on summation order.

Output: ``len(FEATURE_NAMES)`` = 35 values, in this order:

* RGB moments (9): mean, std and skewness of R, G, B;
* HSV (7): saturation-weighted circular mean of hue (cos, sin), its resultant length,
  mean and std of saturation and of value;
* HED colour deconvolution (9): mean, std and 90th percentile of haematoxylin, eosin, DAB;
* tissue fraction (1): share of pixels with saturation > 0.08 (background is unsaturated);
* GLCM texture (6): contrast, dissimilarity, homogeneity, energy, correlation, entropy of the
  grey-level co-occurrence matrix (16 levels, distance 1, 0° and 90°, symmetric, normalised),
  averaged over the two angles;
* gradients (3): mean and std of the Sobel magnitude, variance of the 4-neighbour Laplacian.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slidestream.encoders.spec import EncoderSpec, ResizeRecipe

GLCM_LEVELS = 16
CHUNK = 16  # tiles per torch thread per pass through the statistics (memory, not results: see forward)
TISSUE_SATURATION = 0.08
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray
# skimage.color's ``hed_from_rgb`` (the inverse of Ruifrok & Johnston's stain matrix), written out:
# importing skimage.color pulls scipy.linalg (~0.4 s) into every job for nine numbers. The test
# suite checks these are skimage's values bit for bit (tests/encoders/test_handcrafted*.py).
_HED_FROM_RGB = (
    (1.8779827368521356, -1.0076786862855642, -0.5561158181996246),
    (-0.06590806222356334, 1.1347303724996625, -0.13552179862837116),
    (-0.6019073634392891, -0.4804141884970579, 1.5735880719641926),
)
_LOG_EPS = math.log(1e-6)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{c}_{m}" for c in "rgb" for m in ("mean", "std", "skew")),
    "hue_cos",
    "hue_sin",
    "hue_concentration",
    "sat_mean",
    "sat_std",
    "val_mean",
    "val_std",
    *(f"{c}_{m}" for c in ("hema", "eosin", "dab") for m in ("mean", "std", "p90")),
    "tissue_fraction",
    "glcm_contrast",
    "glcm_dissimilarity",
    "glcm_homogeneity",
    "glcm_energy",
    "glcm_correlation",
    "glcm_entropy",
    "sobel_mean",
    "sobel_std",
    "laplacian_var",
)


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] → HED stain densities, as ``skimage.color.rgb2hed``."""
    matrix = torch.tensor(_HED_FROM_RGB, dtype=rgb.dtype, device=rgb.device)
    od = torch.log(rgb.clamp_min(1e-6)) / _LOG_EPS
    return torch.einsum("bchw,cs->bshw", od, matrix).clamp_min(0)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → HSV in [0, 1], with ``skimage.color.rgb2hsv``'s tie-breaking (B > G > R)."""
    r, g, b = rgb.unbind(1)
    value = rgb.amax(1)
    delta = value - rgb.amin(1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    sat = torch.where(delta > 0, delta / torch.where(value > 0, value, torch.ones_like(value)), 0)
    hue = torch.zeros_like(value)
    hue = torch.where(r == value, (g - b) / safe, hue)
    hue = torch.where(g == value, 2.0 + (b - r) / safe, hue)
    hue = torch.where(b == value, 4.0 + (r - g) / safe, hue)
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), 0)
    return torch.stack((hue, sat, value), 1)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, H, W) luminance, as ``skimage.color.rgb2gray``."""
    w = torch.tensor(GRAY_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("bchw,c->bhw", rgb, w)


def quantize_gray(gray: torch.Tensor, levels: int = GLCM_LEVELS) -> torch.Tensor:
    """Grey in [0, 1] → integer levels 0..levels-1 (int64), the GLCM input."""
    return (gray * levels).floor().clamp(0, levels - 1).long()


def glcm(levels_img: torch.Tensor, levels: int = GLCM_LEVELS) -> torch.Tensor:
    """Symmetric, normalised co-occurrence matrices at distance 1, angles 0 and 90°.

    Returns (B, 2, L, L) float64, matching ``graycomatrix(img, [1], [0, pi/2], levels,
    symmetric=True, normed=True)`` transposed to batch-first.
    """
    b = levels_img.shape[0]
    offsets = torch.arange(b, device=levels_img.device).view(b, 1) * levels * levels
    mats = []
    for i, j in (
        (levels_img[:, :, :-1], levels_img[:, :, 1:]),  # 0°: right neighbour
        (levels_img[:, :-1, :], levels_img[:, 1:, :]),  # 90°: neighbour one row down
    ):
        idx = (i * levels + j).reshape(b, -1) + offsets
        counts = torch.bincount(idx.reshape(-1), minlength=b * levels * levels)
        p = counts.view(b, levels, levels).double()
        p = p + p.transpose(1, 2)
        mats.append(p / p.sum(dim=(1, 2), keepdim=True).clamp_min(1))
    return torch.stack(mats, 1)


def glcm_props(p: torch.Tensor) -> torch.Tensor:
    """(B, A, L, L) → (B, A, 6): contrast, dissimilarity, homogeneity, energy, correlation,
    entropy, with ``graycoprops``'s formulas (correlation is 1 for a constant image)."""
    levels = p.shape[-1]
    idx = torch.arange(levels, dtype=p.dtype, device=p.device)
    i, j = idx.view(-1, 1), idx.view(1, -1)
    contrast = (p * (i - j) ** 2).sum((-2, -1))
    dissimilarity = (p * (i - j).abs()).sum((-2, -1))
    homogeneity = (p / (1 + (i - j) ** 2)).sum((-2, -1))
    energy = (p**2).sum((-2, -1)).sqrt()
    mu_i = (p * i).sum((-2, -1), keepdim=True)
    mu_j = (p * j).sum((-2, -1), keepdim=True)
    std_i = (p * (i - mu_i) ** 2).sum((-2, -1)).sqrt()
    std_j = (p * (j - mu_j) ** 2).sum((-2, -1)).sqrt()
    cov = (p * (i - mu_i) * (j - mu_j)).sum((-2, -1))
    flat = (std_i < 1e-15) | (std_j < 1e-15)
    correlation = torch.where(flat, torch.ones_like(cov), cov / (std_i * std_j).clamp_min(1e-300))
    entropy = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum((-2, -1))
    return torch.stack((contrast, dissimilarity, homogeneity, energy, correlation, entropy), -1)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, population std and skewness over the last axis."""
    mean = x.mean(-1)
    centred = x - mean.unsqueeze(-1)
    std = centred.pow(2).mean(-1).sqrt()
    skew = centred.pow(3).mean(-1) / std.pow(3).clamp_min(1e-6)
    return mean, std, skew


def _gradients(gray: torch.Tensor) -> torch.Tensor:
    """Sobel magnitude mean/std and Laplacian variance, edge-replicated borders."""
    img = F.pad(gray.unsqueeze(1), (1, 1, 1, 1), mode="replicate")
    sobel_x = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=gray.dtype, device=gray.device
    )
    laplace = torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=gray.dtype, device=gray.device
    )
    kernels = torch.stack((sobel_x, sobel_x.T, laplace)).unsqueeze(1)
    gx, gy, lap = F.conv2d(img, kernels).flatten(2).unbind(1)
    magnitude = torch.sqrt(gx**2 + gy**2)
    return torch.stack((magnitude.mean(-1), magnitude.std(-1, correction=0), lap.var(-1)), -1)


class HandcraftedFeatures(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] → (B, 35) statistics; no parameters, no buffers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics are not a network: reduced precision would only add noise, so autocast
        # (requested for the learned encoders) is switched off here.
        # Every statistic is per tile, so on the CPU tiles go through in groups of CHUNK per torch
        # thread: the dozen per-pixel temporaries of a 64-tile batch peaked at ~450 MB above the
        # batch, 32 tiles at ~300 MB and 16 at ~160 MB, with the same numbers bit for bit (a
        # group of under 4 tiles, like any batch that small, differs in float round-off). Per
        # thread, because smaller groups are faster on one thread (cache) but leave two threads
        # waiting on each other. A GPU keeps the whole batch.
        step = x.shape[0] if x.device.type != "cpu" else CHUNK * max(1, torch.get_num_threads())
        with torch.autocast(device_type=x.device.type, enabled=False):
            parts = [self._features(x[i:i + step].float().clamp(0, 1)) for i in range(0, x.shape[0], max(1, step))]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        flat_rgb = x.flatten(2)
        rgb_mean, rgb_std, rgb_skew = _moments(flat_rgb)
        rgb_feats = torch.stack((rgb_mean, rgb_std, rgb_skew), -1).reshape(b, 9)

        hue, sat, val = rgb_to_hsv(x).flatten(2).unbind(1)
        angle = 2 * math.pi * hue
        weight = sat.sum(-1).clamp_min(1e-6)
        hue_cos = (sat * torch.cos(angle)).sum(-1) / weight
        hue_sin = (sat * torch.sin(angle)).sum(-1) / weight
        hsv_feats = torch.stack(
            (
                hue_cos,
                hue_sin,
                torch.sqrt(hue_cos**2 + hue_sin**2),
                sat.mean(-1),
                sat.std(-1, correction=0),
                val.mean(-1),
                val.std(-1, correction=0),
            ),
            -1,
        )

        hed = rgb_to_hed(x).flatten(2)
        n = hed.shape[-1]
        # selection, not a full sort: the same order statistic at a third of the cost
        p90 = hed.kthvalue(int(0.9 * (n - 1)) + 1, dim=-1).values
        hed_feats = torch.stack((hed.mean(-1), hed.std(-1, correction=0), p90), -1).reshape(b, 9)

        tissue = (sat > TISSUE_SATURATION).float().mean(-1, keepdim=True)

        gray = rgb_to_gray(x)
        texture = glcm_props(glcm(quantize_gray(gray))).mean(1).float()

        return torch.cat(
            (rgb_feats, hsv_feats, hed_feats, tissue, texture, _gradients(gray)), dim=1
        )


SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="handcrafted",
        family="handcrafted",
        description="Built-in baseline: RGB/HSV moments, HED stain stats, GLCM and gradients",
        embed_dim=len(FEATURE_NAMES),
        input_size=224,
        tile_size=224,
        native_mpp=0.5,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize=ResizeRecipe(224, None, "bilinear", mode="square", source="this project"),
        pooling="stats",
        expected_params=0,
        published_params=None,
        published_source="not applicable (no learned parameters)",
        builder=HandcraftedFeatures,
        gated=False,
        license="Apache-2.0 (slidestream)",
        default_precision="fp32",
        requires_weights=False,
        notes="Deterministic baseline; features computed in float32/float64 regardless of "
        "the precision setting.",
        extra={"feature_names": FEATURE_NAMES},
    ),
)
