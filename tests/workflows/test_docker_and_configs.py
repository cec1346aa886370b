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
    assert '--no-deps --no-build-isolation ".[workflow]"' in runs and "workflow" in extras
    assert {"snakemake", "snakemake-executor-plugin-slurm", "distributed"} <= {re.split(r"[<>=!]", d)[0] for d in extras["workflow"]}
    # every package from the hashed locks, installed before the package itself, never a newer torch
    assert re.search(r"--require-hashes --no-deps (-r docker/\S+\.lock )*-r docker/requirements\.lock", runs)
    assert runs.index("requirements.lock") < runs.index('".[workflow]"') and "pip check" in runs
    copied = " ".join(args for kind, args in steps if kind == "COPY")
    pinned = dockerfile.read_text() + "".join((REPO / f).read_text() for f in re.findall(r"docker/\S+\.lock", copied))
    assert set(re.findall(r"\btorch==([\d.]+)", pinned)) == {TORCH}
    assert "PIP_CONSTRAINT=/opt/slidestream/docker/constraints.txt" in dockerfile.read_text()
    entry = next(args for kind, args in steps if kind == "ENTRYPOINT")
    assert entry == '["slidestream"]' and "slidestream" in PYPROJECT["project"]["scripts"]
    assert (REPO / "docker" / f"{dockerfile.name}.dockerignore").exists()


def test_cuda_image_and_pins_agree_everywhere():
    cuda = (REPO / "docker" / "Dockerfile.cuda").read_text()
    # the PyPI torch wheel ships its CUDA libraries: a slim Python base, the toolkit's variables set
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-[\w]+$", cuda, re.M) and "FROM ${BASE_IMAGE}" in cuda
    assert "NVIDIA_VISIBLE_DEVICES=all" in cuda and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in cuda
    cpu = (REPO / "docker" / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu and f'"torch=={TORCH}+cpu" "torchvision=={TORCHVISION}+cpu"' in cpu
    constraints = (REPO / "docker" / "constraints.txt").read_text()
    assert f"torch=={TORCH}" in constraints and f"torchvision=={TORCHVISION}" in constraints
    for script in ("quickstart.sh", "interop-venv.sh"):  # the main and the interop test environments
        assert f'"torch=={TORCH}" "torchvision=={TORCHVISION}"' in (REPO / "scripts" / script).read_text()
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


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, sha256 hashes)} of one docker lock file."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "docker" / name).read_text())
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            spec, *hashes = line.split()
            package, version = spec.split("==")
            entries[package] = (version, [h.removeprefix("--hash=sha256:") for h in hashes])
    return entries


def test_docker_locks_pin_every_package_with_a_hash():
    common, cuda = _lock("requirements.lock"), _lock("requirements-cuda.lock")
    assert not set(common) & set(cuda)
    for package, (version, hashes) in {**common, **cuda}.items():
        assert re.fullmatch(r"[\w.+!]+", version), package
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{package} has no sha256"
    assert cuda["torch"][0] == TORCH and cuda["torchvision"][0] == TORCHVISION
    # every direct dependency of the package and of its workflow extra is in the lock
    declared = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["workflow"]
    names = {re.split(r"[<>=!\[; ]", d)[0].lower().replace("_", "-") for d in declared}
    assert names - {"torch"} <= set(common) | set(cuda), names - set(common) - set(cuda)
    constraints = {line.split("==")[0]: line.split("==")[1] for line in (REPO / "docker" / "constraints.txt").read_text().splitlines()
                   if line and not line.startswith("#")}
    assert constraints == {p: v.split("+")[0] for p, (v, _) in {**common, **cuda}.items()}
