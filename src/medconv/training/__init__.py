"""Training: the one engine every trainer runs on, checkpoints, the weight average, layer-wise pretraining."""
