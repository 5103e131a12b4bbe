"""Whole-image inference: the naive sliding window, exact dense scanning, tiles."""
