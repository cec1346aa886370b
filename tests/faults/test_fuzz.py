"""Property-based fuzzing (hypothesis) of CLI options and run configs: whatever a user types, the
answer is an exit code in {0, 1, 2}, never a traceback, and a refusal names the bad option or file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slidestream.errors import ConfigError
from slidestream.pipeline.config import RunConfig, load_config
from tests.faults.conftest import cli, make_blank_slide

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

NASTY_TEXT = ["0", "-1", "1e9", "-0", "inf", "-inf", "nan", "abc", "", " ", "[red]x[/red]", "$(touch PWNED)",
              "1/0", "0x10", "1e-300", "99999999999999999999", "caf\u00e9", "--out", "-", "'", "\\"]
numbers = st.one_of(st.sampled_from(NASTY_TEXT),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(min_value=-10**12, max_value=10**12).map(str))

# (option, values): every option of `slidestream tile` that takes a value
TILE_OPTIONS = {
    "--mpp": numbers, "--magnification": numbers, "--tile-size": numbers, "--overlap": numbers,
    "--min-tissue": numbers, "--min-focus-ratio": numbers, "--fraction": numbers, "--count": numbers,
    "--seed": numbers, "--default-mpp": numbers, "--wait": numbers,
    "--select": st.sampled_from(["mosaic", "fps", "random", "grid", "potato", "", "[x]"]),
    "--backend": st.sampled_from(["auto", "openslide", "tiffslide", "potato", "$(x)"]),
    "--shard": st.sampled_from(["1/2", "0/2", "3/2", "1/0", "a/b", "-1/2", "1/-2", "2", ""]),
}


@pytest.fixture(scope="module")
def blank_slide(tmp_path_factory) -> Path:
    """A slide list naming glass only (no tissue): valid options finish in a moment, with no tiles."""
    return make_blank_slide(tmp_path_factory.mktemp("fuzz") / "blank.tif", side=512)


def assert_clean_answer(result, named: list[str]) -> None:
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:
        text = " ".join(result.output.split())
        assert any(n in text for n in named), (named, text)


@pytest.mark.filterwarnings("ignore::slidestream.errors.NoTissueWarning")
@settings(FUZZ, max_examples=15)
@given(options=st.dictionaries(st.sampled_from(sorted(TILE_OPTIONS)), st.just(None), min_size=1, max_size=4)
       .flatmap(lambda keys: st.fixed_dictionaries({k: TILE_OPTIONS[k] for k in keys})))
def test_fuzzed_tile_options_get_a_clean_answer(blank_slide, tmp_path, options):
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    args = [x for k, v in options.items() for x in (k, v)]
    result = cli("tile", blank_slide, "--out", out, *args)
    # a refusal names the option (--tile-size, or the field it sets, tile_size) or the value given
    named = [*options, *(k[2:].replace("-", "_") for k in options), *(v for v in options.values() if v)]
    assert_clean_answer(result, named)


def config_values():
    scalar = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                       st.sampled_from(NASTY_TEXT), st.booleans(), st.none(), st.just([]), st.just({}))
    return {
        "default_mpp": scalar, "backend": scalar, "shard": scalar, "overwrite": scalar,
        "tiling": st.fixed_dictionaries({}, optional={"mpp": scalar, "tile_size": scalar, "overlap": scalar,
                                                      "min_tissue": scalar, "magnification": scalar}),
        "tissue": st.fixed_dictionaries({}, optional={"min_object_um2": scalar, "remove_pen": scalar}),
        "features": st.fixed_dictionaries({}, optional={"device": scalar, "batch_size": scalar, "precision": scalar,
                                                        "workers": scalar}),
        "lock": st.fixed_dictionaries({}, optional={"wait_s": scalar, "stale_after_s": scalar}),
        "dask": st.fixed_dictionaries({}, optional={"enabled": scalar, "n_workers": scalar}),
        "selection": st.fixed_dictionaries({}, optional={"method": scalar, "fraction": scalar}),
        "nonsense_key": scalar,
    }


@FUZZ
@given(sections=st.fixed_dictionaries({}, optional=config_values()))
def test_fuzzed_run_configs_validate_or_name_the_key(tmp_path, sections):
    config = Path(tempfile.mkdtemp(dir=tmp_path)) / "run.yaml"
    config.write_text(yaml.safe_dump({"slides": ["slides/"], "out": "out", **sections}))
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        text = str(exc)
        assert str(config) in text and "\n  " in text          # the file, then one line per problem
        assert any(key in text for key in sections), text      # ... each naming its key
        return
    assert isinstance(cfg, RunConfig)
    dumped = cfg.model_dump_json()                               # valid means usable: no Infinity/NaN in it
    assert "Infinity" not in dumped and "NaN" not in dumped


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200),
                     st.text(alphabet=st.sampled_from(list("[]{}:,-'\"! \n\tab#&*|>%@`")), max_size=80)
                     .map(lambda t: ("slides: " + t).encode())))
def test_fuzzed_config_bytes_are_a_config_error_or_a_config(tmp_path, raw):
    config = Path(tempfile.mkdtemp(dir=tmp_path)) / "run.yaml"
    config.write_bytes(raw)
    try:
        load_config(config)
    except ConfigError as exc:
        assert str(config) in str(exc)


@FUZZ
@given(raw=st.text(alphabet=st.sampled_from(list("[]{}:,-'\"! \nab#&*|>%@`\u00e9")), max_size=60))
def test_the_run_command_prints_any_broken_config_without_markup_or_traceback(tmp_path, raw):
    config = Path(tempfile.mkdtemp(dir=tmp_path)) / "run.yaml"
    config.write_text("slides: [x.svs]\nout: out\ntiling: " + raw + "\n")
    result = cli("run", config, "--no-progress")
    assert_clean_answer(result, [str(config), "x.svs"])   # the config, or the missing slide it names
