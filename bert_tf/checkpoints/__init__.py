"""Model files: the checkpoint formats, google-research conversion, configs, a model directory."""
