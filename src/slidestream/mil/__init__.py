"""mil stage."""
