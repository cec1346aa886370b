# Per-slide rules: tissue -> tiles (+ selection) -> features -> slide embedding.
#
# Resources: tissue and tiling are CPU-only (one core, a few GB); extraction asks for a GPU when the
# config's features.device is cuda, memory growing with each retry (attempt), and one core per tile
# reader thread (features.workers). Profiles add partitions and accounts (profiles/slurm).
# `params` carry the stage parameters so a changed config re-runs what it changes
# (Snakemake's default rerun trigger "params").


# Without --config slides_per_job=N: one job per stage per slide (else rules/chunked.smk).
if SLIDES_PER_JOB is None:

    rule tissue:
        input:
            slide=slide_file,
        output:
            marker("tissue"),
        params:
            tissue=CFG.tissue.identity(),
        log:
            str(LOGS / "{slide}.tissue.log"),
        threads: 1
        resources:
            mem_mb=lambda wildcards, attempt: 3000 * attempt,
            runtime=30,
        shell:
            RUN + " --stage tissue --slide={wildcards.slide:q} > {log:q} 2>&1"


    rule tiles:
        input:
            marker("tissue"),
        output:
            marker("tiles"),
        params:
            tiling=CFG.tiling_params().model_dump(),
            selection=CFG.selection.model_dump() if CFG.selection else None,
        log:
            str(LOGS / "{slide}.tiles.log"),
        threads: 1
        resources:
            mem_mb=lambda wildcards, attempt: 3000 * attempt,
            runtime=30,
        shell:
            RUN + " --stage tiles --slide={wildcards.slide:q} > {log:q} 2>&1"


    rule features:
        input:
            marker("tiles"),
        output:
            marker("features"),
        params:
            features=CFG.features.model_dump(mode="json") if CFG.features else None,
        log:
            str(LOGS / "{slide}.features.log"),
        threads: CFG.features.workers if CFG.features else 1
        resources:
            gpu=1 if USE_GPU else 0,
            mem_mb=lambda wildcards, attempt: (16000 if USE_GPU else 8000) * attempt,
            runtime=lambda wildcards, attempt: 120 * attempt,
        shell:
            RUN + " --stage features --slide={wildcards.slide:q} > {log:q} 2>&1"


def _embedding_inputs(wildcards):
    inputs = [marker("features", wildcards.slide)]
    if CFG.slide_embedding is not None and CFG.slide_embedding.method == "panther":
        inputs.append(str(CFG.prototypes_path()))
    return inputs


# (a chunk job makes a mean slide embedding itself: rules/chunked.smk)
if "slide_embedding" not in CHUNK_STAGES:

    rule slide_embedding:
        input:
            _embedding_inputs,
        output:
            marker("slide_embedding"),
        params:
            slide_embedding=CFG.slide_embedding.model_dump(mode="json") if CFG.slide_embedding else None,
        log:
            str(LOGS / "{slide}.slide_embedding.log"),
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            RUN + " --stage slide_embedding --slide={wildcards.slide:q} > {log:q} 2>&1"
