"""Datasets: MedMNIST by flag, the user's image folders or CSV manifests, and synthetic lesions.

The package imports nothing heavy by itself (image readers are used by torch-free detection through
ONNX); `load_dataset` and friends live in `data.datasets` and are imported on first use.
"""
from ..api import lazy_names

__all__ = ["load_dataset", "resized", "with_channels", "subsample"]
__getattr__ = lazy_names(__name__, {name: ".datasets" for name in __all__})
