"""`medconv export RUN`: any trained network as ONNX (default) or TorchScript, each file checked against torch.

    from medconv.export import export_run
    export_run("runs/breast")                        # RUN/model.onnx + RUN/model.json
    export_run("runs/isbi-patch", fmt="torchscript")  # RUN/model.pt (dense form), RUN/model_patch.pt, RUN/model.pt.json
"""
from ..api import lazy_names

__all__ = ["export_run"]
__getattr__ = lazy_names(__name__, {"export_run": ".run"})
