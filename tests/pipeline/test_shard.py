"""``--shard i/n``: a deterministic, complete, disjoint split that needs no coordinator."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from slidestream.errors import ConfigError
from slidestream.pipeline.shard import Shard, apply_shard, shard_index
from slidestream.store import SlideStore
from tests.conftest import ALL_SLIDES, CMU
from tests.workflows.helpers import run_cli, slide_list

IDS = [f"TCGA-{i:04d}-01A" for i in range(400)]


def test_parse_and_errors():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard.parse(" 1 / 1 ")) == "1/1"
    assert Shard.parse(None) is None
    for bad in ("0/4", "5/4", "1/0", "a/b", "1", "-1/2"):
        with pytest.raises(ConfigError, match=r"expected i/n with 1 <= i <= n"):
            Shard.parse(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_shards_are_disjoint_and_complete(n):
    parts = [apply_shard(IDS, f"{i}/{n}", key=str) for i in range(1, n + 1)]
    assert sorted(x for part in parts for x in part) == sorted(IDS)
    assert sum(len(p) for p in parts) == len(IDS)
    for part in parts:   # each shard keeps the list's order
        assert part == [x for x in IDS if x in set(part)]


def test_assignment_depends_only_on_the_slide_id():
    shuffled = random.Random(1).sample(IDS, len(IDS))
    grown = IDS + [f"NEW-{i}" for i in range(50)]
    for i in (1, 2, 3):
        mine = set(apply_shard(IDS, f"{i}/3", key=str))
        assert set(apply_shard(shuffled, f"{i}/3", key=str)) == mine          # list order is irrelevant
        assert set(apply_shard(grown, f"{i}/3", key=str)) & set(IDS) == mine  # new slides move no one
    # the same in a fresh interpreter (no Python hash randomisation involved)
    code = "from slidestream.pipeline.shard import shard_index; print([shard_index(f'TCGA-{i:04d}-01A', 5) for i in range(20)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == str([shard_index(f"TCGA-{i:04d}-01A", 5) for i in range(20)])


def test_shards_are_balanced_on_a_large_list():
    sizes = [len(apply_shard(IDS, f"{i}/4", key=str)) for i in range(1, 5)]
    assert min(sizes) > 0.8 * len(IDS) / 4 and max(sizes) < 1.2 * len(IDS) / 4


def test_cli_shards_split_the_real_slides(tmp_path):
    slides = slide_list(tmp_path, ALL_SLIDES)
    expected = {i: {p.stem for p in ALL_SLIDES if shard_index(p.stem, 2) == i} for i in (1, 2)}
    for i in (1, 2):
        result = run_cli("tissue", slides, "--out", tmp_path / f"out{i}", "--shard", f"{i}/2")
        assert result.exit_code == 0, result.output
        assert f"shard {i}/2: {len(expected[i])} of 4 slides" in result.stderr
        assert {p.name.removesuffix(".zarr") for p in (tmp_path / f"out{i}").glob("*.zarr")} == expected[i]
    assert expected[1] | expected[2] == {p.stem for p in ALL_SLIDES} and not expected[1] & expected[2]

    bad = run_cli("extract", slides, "--out", tmp_path / "x", "--shard", "3/2")
    assert bad.exit_code == 2 and "expected i/n" in bad.stderr
    # extract --shard on a shard: features only for its slides (tissue/tiles made on the way)
    shard = shard_index(CMU.stem, 2)   # the shard with the small CMU slide keeps this quick
    result = run_cli("extract", slides, "--out", tmp_path / f"out{shard}", "--shard", f"{shard}/2",
                     "--mpp", "2.0", "--tile-size", "56")
    assert result.exit_code == 0, result.output
    for sid in expected[shard]:
        assert SlideStore.open(tmp_path / f"out{shard}" / f"{sid}.zarr").has("features/handcrafted")
    assert {p.name.removesuffix(".zarr") for p in (tmp_path / f"out{shard}").glob("*.zarr")} == expected[shard]
