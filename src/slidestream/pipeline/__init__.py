"""Batch orchestration: run stages over many slides, configs, manifests."""
