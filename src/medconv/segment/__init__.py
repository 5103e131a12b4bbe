"""Segmentation: patch classifiers, dense scanning, dense networks, post-processing and metrics.

    from medconv.segment import SegmentConfig, train_segmentation, evaluate_segmentation, predict_segmentation
    train_segmentation(SegmentConfig(dataset="isbi2012", mode="dense", arch="unet"), "runs/em")
    evaluate_segmentation("runs/em", split="test", tta="d4")
    predict_segmentation("runs/em", ["slice.png"], "maps/")
"""
from ..api import lazy_names

__all__ = ["SegmentConfig", "train_segmentation", "evaluate_segmentation", "predict_segmentation"]
__getattr__ = lazy_names(__name__, {"SegmentConfig": ".config", "train_segmentation": ".train",
                                    "evaluate_segmentation": ".evaluate", "predict_segmentation": ".evaluate"})
