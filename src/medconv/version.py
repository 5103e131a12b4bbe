"""medconv's version (read by checkpoints and the package)."""
__version__ = "0.1.0"
