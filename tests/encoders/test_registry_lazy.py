"""Looking an encoder up imports only its family (issue 15 §4): a job pays for what it runs.

timm imports torchvision and, through ``torchvision.ops``, ``torch._dynamo``: seconds and hundreds
of MB per process. The built-in encoder and the plain-torch families must not load them, and the
registry's written-out name → module table must say exactly what the family modules declare.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from slidestream.encoders import registry

REPO = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> list[str]:
    """Which of timm / torchvision / torch._dynamo a fresh interpreter holds after ``code``."""
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in ('timm', 'torchvision', 'torch._dynamo') if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_table_is_exactly_what_the_family_modules_declare():
    declared: dict[str, str] = {}
    for module_name in dict.fromkeys(registry.WHERE.values()):
        module = importlib.import_module(f"slidestream.encoders.{module_name}")
        for spec in module.SPECS:
            assert spec.name not in declared, f"{spec.name} declared twice"
            declared[spec.name] = module_name
    assert declared == registry.WHERE
    assert [s.name for s in registry.all_specs()] == registry.list_encoders()


def test_the_tiling_table_is_every_specs_native_scale():
    """A job tiles at ``native_tiling`` before the encoder has loaded: it must be the spec's."""
    for spec in registry.all_specs():
        assert registry.native_tiling(spec.name) == (spec.native_mpp, spec.tile_size), spec.name
    assert set(registry.TILING) <= set(registry.WHERE)
    assert all(registry.TILING[n] != registry.DEFAULT_TILING for n in registry.TILING)  # only real exceptions


@pytest.mark.slow
def test_the_builtin_encoder_runs_without_timm_or_torchvision():
    code = ("from slidestream.encoders import get_spec, load_encoder, list_encoders\n"
            "import numpy as np\n"
            "assert len(list_encoders()) > 30\n"
            "enc = load_encoder('handcrafted')\n"
            "assert enc(np.zeros((2, 224, 224, 3), np.uint8)).shape == (2, get_spec('handcrafted').embed_dim)\n"
            "assert enc.provenance()['timm_version']\n"
            "get_spec('phikon'); get_spec('hibou-b')")
    assert loaded_after(code) == []


@pytest.mark.slow
def test_a_timm_encoder_loads_timm_when_asked():
    assert "timm" in loaded_after("from slidestream.encoders import get_spec; get_spec('UNI')")


def test_unknown_names_list_every_encoder_without_importing_them():
    from slidestream.errors import ConfigError

    with pytest.raises(ConfigError, match="valid encoders: uni, uni2-h"):
        registry.get_spec("no-such-encoder")
