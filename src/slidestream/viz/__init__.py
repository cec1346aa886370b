"""Visualisation: overlays, heatmaps, prototype maps."""
