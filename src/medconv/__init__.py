"""medconv: convolutional neural networks for medical image analysis.

The Python API mirrors the command line (each name is imported on first use, see `medconv.api`):

    import medconv
    cfg = medconv.TrainConfig(dataset="breastmnist", arch="resnet18", epochs=10)
    result = medconv.train(cfg, "runs/b")                       # medconv train
    metrics = medconv.evaluate("runs/b", split="test")          # medconv evaluate
    model, meta = medconv.load_model("runs/b")                  # the best checkpoint as an nn.Module
    rows = medconv.predict_files("runs/b", ["scan.png"])        # medconv predict
    probs = medconv.predict("runs/b", images)                   # arrays or tensors (N, C, H, W) -> (N, K)
    medconv.train(cfg, "runs/mine", data={"train": (x, y), "val": (xv, yv)})  # arrays, tensors or Datasets
    page = medconv.write_report(["runs/b"])                     # medconv report: runs/b/report.html

Segmentation and detection: `medconv.segment` (train_segmentation, evaluate_segmentation,
predict_segmentation, SegmentConfig) and `medconv.detect` (train_detector, tune_detector,
evaluate_detection, predict_detections).
"""
from .api import lazy_names
from .version import __version__

__all__ = ["__version__", "TrainConfig", "load_config", "train", "evaluate", "predict", "predict_files", "load_model",
           "pretrain_stack", "build_model", "write_report", "segment", "detect"]

__getattr__ = lazy_names(__name__, {
    "TrainConfig": ".config", "load_config": ".config", "train": ".classify.train",
    "evaluate": ".classify.evaluate", "predict": ".classify.predict", "predict_files": ".classify.predict", "load_model": ".training.checkpoint",
    "pretrain_stack": ".classify.pretrain", "build_model": ".models.registry", "write_report": ".report.page",
    "segment": ".segment", "detect": ".detect"})
