"""Networks: each module registers its architectures in `registry` when imported, and this package
imports them all (the registry itself imports none)."""
from . import cnn3d, classic, feature_head, googlenet, lenet, mlp, patch_cnn, resnet, simple_cnn, unet, unet3d  # noqa: F401
from .registry import REGISTRY, available, build_model, register  # noqa: F401
