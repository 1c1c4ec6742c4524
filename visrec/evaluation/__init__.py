"""Offline evaluation of image embeddings: retrieval metrics, baselines, maps and tables."""
