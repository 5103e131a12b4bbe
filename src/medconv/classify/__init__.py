"""Image classification: training on the engine (`train`), evaluation (`evaluate`) and prediction (`predict`)."""
