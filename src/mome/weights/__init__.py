"""Weights: our safetensors + JSON model folders, the embedded default model, official checkpoint import."""
