"""medconv: convolutional neural networks for medical image analysis."""
__version__ = "0.1.0"
