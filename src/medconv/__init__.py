"""medconv: convolutional neural networks for medical image analysis.

The Python API mirrors the command line:

    import medconv
    result = medconv.train(medconv.TrainConfig(dataset="breastmnist", arch="resnet18"), "runs/b")
    metrics = medconv.evaluate("runs/b", split="test")
    model, meta = medconv.load("runs/b")
    rows = medconv.predict("runs/b", ["scan.png"])
"""
__version__ = "0.1.0"

from .config import TrainConfig, load_config  # noqa: E402,F401


def train(config, out, resume: bool = False) -> dict:
    """Train a classifier into run directory `out`; see medconv.training.loop.train."""
    from .training.loop import train as _train
    return _train(config, out, resume=resume)


def evaluate(run_dir, split: str = "test", **options) -> dict:
    """Metrics of a run on a split; see medconv.evaluate.evaluate."""
    from .evaluation import evaluate as _evaluate
    return _evaluate(run_dir, split, **options)


def load(run_dir, which: str = "best", device: str = "cpu"):
    """(model, metadata) of a run's checkpoint."""
    from .training.checkpoint import load_model
    return load_model(run_dir, which, device)


def predict(run_dir, inputs, out=None, **options) -> list[dict]:
    """Class probabilities for image files or folders; see medconv.predict.predict_files."""
    from .prediction import predict_files
    return predict_files(run_dir, list(inputs), out, **options)
