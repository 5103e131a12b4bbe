"""Detection from probability maps: point targets, peaks, matching, tuning, training and prediction.

    from medconv.detect import train_detector, evaluate_detection, predict_detections
    from medconv.segment import SegmentConfig
    train_detector(SegmentConfig(dataset="crchistophenotypes", mode="dense", arch="unet",
                                 target="proximity", radius=6), "runs/nuclei")
    evaluate_detection("runs/nuclei", split="val", tolerance=6)
    predict_detections("runs/nuclei", ["image.png"], out="detections.csv")   # torch-free after `medconv export`
"""
from ..api import lazy_names

__all__ = ["train_detector", "tune_detector", "evaluate_detection", "predict_detections"]
__getattr__ = lazy_names(__name__, {"train_detector": ".pipeline", "tune_detector": ".pipeline",
                                    "evaluate_detection": ".pipeline", "predict_detections": ".predict"})
