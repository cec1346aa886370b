"""``--device``: bad, absent and several devices are one clear line, never a traceback."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.encoders import load_encoder
from slidestream.encoders.devices import multi_gpu_recipe, resolve_device
from slidestream.errors import ConfigError
from tests.conftest import CMU


def test_valid_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" cpu ") == torch.device("cpu")


@pytest.mark.parametrize(("text", "says"), [
    ("gpu", "expected cpu, cuda, cuda:N or mps"),
    ("cuda:x", "expected cpu, cuda, cuda:N or mps"),
    ("cpu:1", "cpu takes no index"),
    ("cuda:0,cpu", "several devices must all be cuda:N"),
])
def test_malformed_devices_are_named(text, says):
    with pytest.raises(ConfigError, match=says) as info:
        resolve_device(text)
    assert repr(text) in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so_before_building_a_model():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        load_encoder("resnet50-trunc", random_init=True, device="cuda:0")


def test_several_gpus_get_the_shard_recipe():
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda:0,cuda:1")
    message = str(info.value)
    assert "\n" not in message
    assert "CUDA_VISIBLE_DEVICES=0 slidestream extract" in message and "--shard 1/2" in message
    assert "CUDA_VISIBLE_DEVICES=1 slidestream extract" in message and "--shard 2/2" in message
    assert multi_gpu_recipe(["cuda", "cuda:3"]).startswith("CUDA_VISIBLE_DEVICES=0 ")
    assert "CUDA_VISIBLE_DEVICES=3 " in multi_gpu_recipe(["cuda", "cuda:3"])


@pytest.mark.parametrize("device", ["bogus", "cuda:0,cuda:1"])
def test_cli_bad_device_is_one_line_and_exit_2(tmp_path, device):
    result = CliRunner().invoke(app, ["extract", str(CMU), "--out", str(tmp_path), "--device", device])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error" in result.stderr
    assert f"device {device!r}" in result.stderr
    assert not any(tmp_path.iterdir())   # nothing was started
