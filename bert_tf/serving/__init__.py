"""Serving: SavedModel export, raw-text and in-graph tokenization, and feature extraction."""
