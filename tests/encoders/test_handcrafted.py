"""The weight-free baseline: scikit-image definitions, determinism, and that it sees tissue."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import hed_from_rgb, rgb2gray, rgb2hed, rgb2hsv
from skimage.feature import graycomatrix, graycoprops

from slidestream.encoders import get_spec, load_encoder
from slidestream.encoders.handcrafted import (
    _HED_FROM_RGB,
    FEATURE_NAMES,
    GLCM_LEVELS,
    glcm,
    glcm_props,
    quantize_gray,
    rgb_to_gray,
    rgb_to_hed,
    rgb_to_hsv,
)
from tests.encoders._helpers import he_like_tile, white_tile


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("handcrafted")


def _chw(tile: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(tile).permute(2, 0, 1).unsqueeze(0).double() / 255


def _features(encoder, tiles: np.ndarray) -> dict[str, np.ndarray]:
    out = encoder(tiles)
    return {name: out[:, i] for i, name in enumerate(FEATURE_NAMES)}


def test_fixed_dimension_no_parameters_no_weights(encoder) -> None:
    assert get_spec("handcrafted").embed_dim == len(FEATURE_NAMES) == 35
    assert sum(p.numel() for p in encoder.model.parameters()) == 0
    assert encoder.model.state_dict() == {}
    assert encoder.provenance()["weights_sha256"] == "no-weights"


def test_colour_transforms_match_scikit_image() -> None:
    tile = he_like_tile(64)
    x = _chw(tile)
    np.testing.assert_allclose(rgb_to_hed(x)[0].permute(1, 2, 0).numpy(), rgb2hed(tile), atol=1e-10)
    np.testing.assert_allclose(rgb_to_hsv(x)[0].permute(1, 2, 0).numpy(), rgb2hsv(tile), atol=1e-10)
    np.testing.assert_allclose(rgb_to_gray(x)[0].numpy(), rgb2gray(tile), atol=1e-10)


def test_stain_matrix_is_scikit_images_bit_for_bit() -> None:
    """The matrix is written out (no skimage import in a job); it must be skimage's exactly."""
    assert np.array_equal(np.array(_HED_FROM_RGB), hed_from_rgb)


def test_hsv_tie_breaking_and_grey_pixels_match_scikit_image() -> None:
    tile = np.array(
        [[[255, 255, 0], [0, 255, 255], [255, 0, 255], [90, 90, 90], [0, 0, 0]]], np.uint8
    )
    np.testing.assert_allclose(
        rgb_to_hsv(_chw(tile))[0].permute(1, 2, 0).numpy(), rgb2hsv(tile), atol=1e-12
    )


def test_glcm_texture_matches_scikit_image() -> None:
    tile = he_like_tile(96, seed=3)
    levels = quantize_gray(rgb_to_gray(_chw(tile).float()))
    ours = glcm_props(glcm(levels))[0].numpy()  # (angles, props)
    img = levels[0].numpy().astype(np.uint8)
    p = graycomatrix(img, [1], [0, np.pi / 2], levels=GLCM_LEVELS, symmetric=True, normed=True)
    names = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "entropy")
    want = np.stack([graycoprops(p, n)[0] for n in names], axis=-1)
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-12)


def test_deterministic_and_independent_of_batch_company(encoder) -> None:
    tiles = np.stack([he_like_tile(seed=1), white_tile(seed=1), he_like_tile(seed=2)])
    a = encoder(tiles)
    b = encoder(tiles)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(encoder(tiles[1:2])[0], a[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("value", [0, 255, 128])
def test_flat_tiles_are_finite(encoder, value: int) -> None:
    tile = np.full((1, 224, 224, 3), value, np.uint8)
    assert np.isfinite(encoder(tile)).all()


def test_pink_he_tile_and_white_glass_are_told_apart(encoder) -> None:
    pink = np.stack([he_like_tile(seed=s) for s in range(4)])
    white = np.stack([white_tile(seed=s) for s in range(4)])
    f_pink, f_white = _features(encoder, pink), _features(encoder, white)
    assert f_pink["tissue_fraction"].min() > 0.9 and f_white["tissue_fraction"].max() < 0.05
    assert f_pink["hema_mean"].min() > 2 * f_white["hema_mean"].max()
    assert f_pink["eosin_mean"].min() > f_white["eosin_mean"].max()
    assert f_pink["sat_mean"].min() > 0.2 > f_white["sat_mean"].max()
    # And as whole vectors: every pink tile is nearer to the other pinks than to any white tile.
    both = np.concatenate([encoder(pink), encoder(white)])
    z = (both - both.mean(0)) / (both.std(0) + 1e-6)
    dist = np.linalg.norm(z[:, None] - z[None], axis=-1)
    within = max(dist[:4, :4].max(), dist[4:, 4:].max())
    assert dist[:4, 4:].min() > within


def test_reduced_precision_does_not_change_the_statistics() -> None:
    tiles = np.stack([he_like_tile(seed=5)])
    a = load_encoder("handcrafted")(tiles)
    b = load_encoder("handcrafted", precision="bf16")(tiles)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
