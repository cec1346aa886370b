"""The chunked SSD scan is the Mamba-2 recurrence, exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slidestream.slide_encoders import mamba2 as mamba2_module
from slidestream.slide_encoders.mamba2 import Mamba2
from slidestream.slide_encoders.ssd import segsum, ssd_chunked, ssd_sequential


def random_inputs(length, heads=4, headdim=3, groups=2, state=5, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    kw = {"dtype": torch.float64, "generator": g}
    x = torch.randn(batch, length, heads, headdim, **kw)
    dt = F.softplus(torch.randn(batch, length, heads, **kw))
    A = -torch.rand(heads, **kw) * 3 - 0.05
    B = torch.randn(batch, length, groups, state, **kw)
    C = torch.randn(batch, length, groups, state, **kw)
    return x, dt, A, B, C


@pytest.mark.parametrize(
    ("length", "chunk"), [(24, 8), (23, 8), (5, 8), (37, 6), (64, 16), (50, 1), (1, 4), (33, 32)]
)
def test_chunked_scan_equals_sequential_recurrence(length, chunk):
    x, dt, A, B, C = random_inputs(length, seed=length * 100 + chunk)
    state0 = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    y_fast, final_fast = ssd_chunked(x, dt, A, B, C, chunk, initial_state=state0)
    y_ref, final_ref = ssd_sequential(x, dt, A, B, C, initial_state=state0)
    assert y_fast.shape == y_ref.shape == (2, length, 4, 3)
    torch.testing.assert_close(y_fast, y_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(final_fast, final_ref, rtol=0, atol=1e-5)
    assert (y_fast - y_ref).abs().max() < 1e-10  # fp64: round-off only


def test_chunked_scan_is_sensitive_to_the_decay():
    """Guard against a vacuous comparison: a wrong A must be visible at the tolerance used."""
    x, dt, A, B, C = random_inputs(23)
    y_ref, _ = ssd_sequential(x, dt, A, B, C)
    y_wrong, _ = ssd_chunked(x, dt, A * 1.01, B, C, 8)
    assert (y_wrong - y_ref).abs().max() > 1e-5


def test_segsum_definition():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    s = segsum(a)
    assert s[3, 1] == 3.0 + 4.0 and s[2, 2] == 0.0 and s[3, 0] == 9.0
    assert torch.isinf(s[0, 1]) and s[0, 1] < 0


def _block(chunk=4):
    torch.manual_seed(0)
    return Mamba2(16, d_state=4, headdim=8, chunk_size=chunk).double()


def test_block_output_does_not_depend_on_chunk_size():
    u = torch.randn(2, 13, 16, dtype=torch.float64)
    out4 = _block(4)(u)
    block = _block(4)
    block.chunk_size = 5
    torch.testing.assert_close(block(u), out4, rtol=0, atol=1e-10)


def test_block_with_sequential_scan_matches(monkeypatch):
    u = torch.randn(1, 11, 16, dtype=torch.float64)
    fast = _block()(u)
    monkeypatch.setattr(mamba2_module, "ssd_scan", lambda *args: ssd_sequential(*args[:5])[0])
    torch.testing.assert_close(_block()(u), fast, rtol=0, atol=1e-10)


def test_block_is_causal_so_trailing_padding_is_harmless():
    block = _block()
    u = torch.randn(1, 9, 16, dtype=torch.float64)
    padded = torch.cat([u, torch.randn(1, 6, 16, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(block(padded)[:, :9], block(u), rtol=0, atol=1e-10)


def test_block_parameter_names_match_mamba_ssm():
    block = Mamba2(768, d_state=128)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (3352, 768),
        "conv1d.weight": (1792, 1, 4),
        "conv1d.bias": (1792,),
        "dt_bias": (24,),
        "A_log": (24,),
        "D": (24,),
        "norm.weight": (1536,),
        "out_proj.weight": (768, 1536),
    }
