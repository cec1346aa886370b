"""The stage names of a run, in order: in a module of their own so that the command line can show
them in ``slidestream run --help`` without importing the stages themselves."""

STAGES = ("tissue", "tiles", "features", "prototypes", "slide_embedding", "mil")
PER_SLIDE_STAGES = ("tissue", "tiles", "features", "slide_embedding")
COHORT_STAGES = ("prototypes", "mil")
