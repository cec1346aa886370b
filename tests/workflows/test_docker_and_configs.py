"""What can be checked without a Docker engine: the Dockerfiles copy files that exist, install the
workflow extra and the pinned torch, and start the real entry point; the example configs validate."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from slidestream.pipeline.config import load_config
from tests.conftest import REPO

DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cuda"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TORCH, TORCHVISION = "2.14.1", "0.29.1"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_consistent_with_the_repository(dockerfile):
    steps = _instructions(dockerfile)
    kinds = [k for k, _ in steps]
    assert kinds.index("FROM") < kinds.index("COPY") and set(kinds) <= {
        "ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "ENTRYPOINT", "CMD"}
    for kind, args in steps:
        if kind == "COPY":
            *sources, _dest = args.split()
            for src in sources:
                assert (REPO / src).exists(), f"{dockerfile.name} copies missing {src}"
    runs = " ".join(args for kind, args in steps if kind == "RUN")
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert 'pip install ".[workflow]"' in runs and "workflow" in extras
    assert {"snakemake", "snakemake-executor-plugin-slurm", "distributed"} <= {re.split(r"[<>=!]", d)[0] for d in extras["workflow"]}
    # torch: exactly the tested pins, installed before the package, never anything newer
    assert f'"torch=={TORCH}" "torchvision=={TORCHVISION}"' in runs
    assert runs.index("torch==") < runs.index(".[workflow]")
    assert set(re.findall(r"torch==([\d.]+)", dockerfile.read_text())) == {TORCH}
    assert "PIP_CONSTRAINT=/opt/slidestream/docker/constraints.txt" in dockerfile.read_text()
    entry = next(args for kind, args in steps if kind == "ENTRYPOINT")
    assert entry == '["slidestream"]' and "slidestream" in PYPROJECT["project"]["scripts"]
    assert (REPO / "docker" / f"{dockerfile.name}.dockerignore").exists()


def test_cuda_image_and_pins_agree_everywhere():
    cuda = (REPO / "docker" / "Dockerfile.cuda").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\w.\-]+$", cuda, re.M) and "FROM ${CUDA_IMAGE}" in cuda
    cpu = (REPO / "docker" / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu
    constraints = (REPO / "docker" / "constraints.txt").read_text()
    assert f"torch=={TORCH}" in constraints and f"torchvision=={TORCHVISION}" in constraints
    quickstart = (REPO / "scripts" / "quickstart.sh").read_text()
    assert f'"torch=={TORCH}" "torchvision=={TORCHVISION}"' in quickstart
    torch_dep = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert torch_dep.endswith(f"<={TORCH}")


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(config):
    cfg = load_config(config)
    assert cfg.features is not None and cfg.stages()[:3] == ("tissue", "tiles", "features")


def test_the_three_example_configs_cover_cpu_gpu_and_cluster():
    configs = {p.stem: load_config(p) for p in (REPO / "configs").glob("*.yaml")}
    assert configs["local-cpu"].encoder == "handcrafted" and configs["local-cpu"].features.device == "cpu"
    assert configs["gpu-uni"].encoder == "uni" and configs["gpu-uni"].features.weights is not None
    assert configs["gpu-uni"].features.device == "cuda" and "prototypes" in configs["gpu-uni"].stages()
    assert configs["cluster"].mil is not None and configs["cluster"].encoder == "hibou-b"
