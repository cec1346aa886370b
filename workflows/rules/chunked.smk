# Chunked front stages (--config slides_per_job=N): tissue, tiles, features (and a mean slide
# embedding) of N slides in ONE job, i.e. one `slidestream run` process.
#
# Why: every job is a fresh Python process that imports torch, the encoder's libraries and loads
# the model (seconds) before its first tile, and per-slide tissue and tiles jobs do well under a
# second of work each. Snakemake `group:` only packs jobs into one SLURM allocation; each job in
# a group is still its own process. A chunk job pays that start-up once for N slides.
#
# What stays the same: each slide's completion markers are this rule's outputs (Snakemake's
# "done" is still slidestream's), the stores equal those of per-slide jobs and `slidestream
# run`, and a rerun skips what the stores already hold. A slide that fails fails its chunk's job
# (its manifest row says why); rerunning the chunk recomputes only that slide, the others are
# skipped in seconds. Chunks are consecutive slides in the run config's order.
#
# On SLURM, profiles address rules by name and chunk rules are named slides_0, slides_1, ...: give
# their partition, GPU and cores with --config chunk_resources (YAML), e.g.
#   --config slides_per_job=8 'chunk_resources={slurm_partition: gpu, gres: "gpu:1", gpu: 0, cpus_per_task: 8}'

CHUNK_STAGES = [s for s in ("tissue", "tiles", "features") if s in STAGES]
if ("slide_embedding" in STAGES and CFG.slide_embedding is not None
        and CFG.slide_embedding.method != "panther"):   # panther waits for the cohort's prototypes
    CHUNK_STAGES.append("slide_embedding")
CHUNK_RESOURCES = dict(config.get("chunk_resources") or {})
_IDS = list(SLIDES)
CHUNKS = [_IDS[i:i + SLIDES_PER_JOB] for i in range(0, len(_IDS), SLIDES_PER_JOB)]
_STAGE_ARGS = " ".join(f"--stage {s}" for s in CHUNK_STAGES)
_CHUNK_PARAMS = {
    "tissue": CFG.tissue.identity(),
    "tiling": CFG.tiling_params().model_dump(),
    "selection": CFG.selection.model_dump() if CFG.selection else None,
    "features": CFG.features.model_dump(mode="json") if CFG.features else None,
    "slide_embedding": (CFG.slide_embedding.model_dump(mode="json")
                        if "slide_embedding" in CHUNK_STAGES else None),
}
# Per slide, as the per-slide rules ask (tissue + tiles 30 min, features 120 min per attempt).
_MINUTES_PER_SLIDE = 60 + (120 if "features" in CHUNK_STAGES else 0)


def _chunk_resources(n):
    """What the per-slide rules ask for, the runtime for n slides in series (grows per attempt)."""
    return {"gpu": 1 if USE_GPU and "features" in CHUNK_STAGES else 0,
            "mem_mb": lambda wildcards, attempt: (16000 if USE_GPU else 8000) * attempt,
            "runtime": lambda wildcards, attempt: _MINUTES_PER_SLIDE * n * attempt}


def _chunk_inputs(ids):
    return [str(SLIDES[sid].path) for sid in ids if SLIDES[sid].path.exists()]


for _k, _ids in enumerate(CHUNKS):

    rule:
        name:
            f"slides_{_k}"
        input:
            lambda wildcards, ids=_ids: _chunk_inputs(ids),
        output:
            [marker(stage, sid) for sid in _ids for stage in CHUNK_STAGES],
        params:
            **_CHUNK_PARAMS,
            slides=_ids,
        log:
            str(LOGS / f"slides_{_k}.log"),
        threads: CFG.features.workers if CFG.features and "features" in CHUNK_STAGES else 1
        resources:
            **{**_chunk_resources(len(_ids)), **CHUNK_RESOURCES},
        shell:
            RUN + " " + _STAGE_ARGS + " " + _braces(" ".join(f"--slide={shlex.quote(sid)}" for sid in _ids))
            + " > {log:q} 2>&1"
