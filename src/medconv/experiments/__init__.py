"""Experiments of the course that are more than one training run (`medconv experiment NAME`)."""
