"""Segmentation: patch classifiers, dense scanning, dense networks, post-processing and metrics."""
