"""The encoder loads in the background while a job tiles (issue 15 §4); errors stay what they were."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from slidestream.cli import app
from slidestream.encoders import load_encoder
from slidestream.encoders.loading import (
    EncoderLoad,
    EncoderLoadFailed,
    encoder_name,
    encoder_tiling,
    resolve,
)
from slidestream.errors import ConfigError
from slidestream.extraction import ExtractOptions
from slidestream.pipeline.stages import SlideSource, run_extract
from slidestream.store import load_features
from tests.conftest import CMU


def test_unknown_name_fails_at_once_with_the_registry_message():
    with pytest.raises(ConfigError) as info:
        EncoderLoad("no-such-encoder", device="cpu")
    assert "unknown encoder 'no-such-encoder'" in str(info.value) and "handcrafted" in str(info.value)


@pytest.mark.slow
def test_name_and_scale_are_known_before_the_load_ends_and_equal_the_specs():
    loading = EncoderLoad("Resnet50_Trunc", random_init=True, device="cpu")
    assert encoder_name(loading) == "resnet50-trunc"
    assert encoder_tiling(loading) == (0.5, 256)
    model = resolve(loading)
    assert (model.spec.name, model.spec.native_mpp, model.spec.tile_size) == ("resnet50-trunc", 0.5, 256)
    assert encoder_tiling(model) == encoder_tiling(loading) and encoder_name(model) == encoder_name(loading)
    assert loading.result() is model   # one load, however often it is asked for


def test_a_failed_load_raises_the_original_error_and_stops_a_batch():
    loading = EncoderLoad("handcrafted", weights="x.pt", device="cpu")
    with pytest.raises(ConfigError, match="has no weights; do not pass any"):
        loading.result()
    with pytest.raises(EncoderLoadFailed) as info:   # not an Exception: no per-slide handler records it
        resolve(loading)
    assert not isinstance(info.value, Exception) and isinstance(info.value.error, ConfigError)


def test_on_ready_runs_once():
    seen = []
    loading = EncoderLoad("handcrafted", device="cpu", on_ready=seen.append)
    loading.result()
    loading.result()
    assert len(seen) == 1 and seen[0].spec.name == "handcrafted"


@pytest.mark.slow
def test_features_through_a_background_load_equal_a_loaded_encoders(tmp_path):
    options = ExtractOptions(batch_size=16, workers=2)
    run_extract(SlideSource(CMU), tmp_path / "a", load_encoder("handcrafted"), options, write_images=False)
    run_extract(SlideSource(CMU), tmp_path / "b", EncoderLoad("handcrafted", device="cpu"), options, write_images=False)
    (fa, ca), (fb, cb) = (load_features(tmp_path / d / f"{CMU.stem}.zarr", "handcrafted") for d in "ab")
    assert len(fa) > 10
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(fa, fb)


def test_cli_load_error_is_one_line_exit_2_and_no_manifest_row(tmp_path):
    """The error comes after the first slide's tiles on a CPU (they are valid), but the run still
    ends as a usage error with the loader's own message, and no slide is recorded as done."""
    result = CliRunner().invoke(app, ["extract", str(CMU), "--out", str(tmp_path), "--encoder", "handcrafted",
                                      "--weights", str(tmp_path / "w.pt")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error encoder 'handcrafted' has no weights; do not pass any"]
    assert not (tmp_path / "manifest.csv").exists()
