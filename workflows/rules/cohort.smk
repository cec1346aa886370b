# Cohort rules: they need the features of every slide, and run once.
#
# prototypes: PANTHER prototypes fitted on a sample of all slides' features (CPU, memory-heavy);
#             each slide's PANTHER embedding then depends on them (rules/slide.smk).
# mil:        MIL cross-validation on the stores (mil: section of the run config; a GPU helps).


rule prototypes:
    input:
        all_markers("features"),
    output:
        str(CFG.prototypes_path()),
    params:
        panther=CFG.slide_embedding.panther.model_dump(mode="json") if CFG.slide_embedding else None,
    log:
        str(LOGS / "cohort.prototypes.log"),
    threads: 4
    resources:
        mem_mb=lambda wildcards, attempt: 32000 * attempt,
        runtime=120,
    shell:
        RUN + " --stage prototypes > {log:q} 2>&1"


rule mil:
    input:
        features=all_markers("features"),
        labels=str(CFG.mil.labels) if CFG.mil else [],
    output:
        str(CFG.mil_out() / "metrics.json") if CFG.mil else "mil.unused",
    params:
        mil=CFG.mil.model_dump(mode="json") if CFG.mil else None,
    log:
        str(LOGS / "cohort.mil.log"),
    threads: 4
    resources:
        gpu=1 if USE_GPU else 0,
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 480 * attempt,
    shell:
        RUN + " --stage mil > {log:q} 2>&1"
