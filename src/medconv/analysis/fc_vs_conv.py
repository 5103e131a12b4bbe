"""Why convolutions: weights of a fully connected, a locally connected and a convolutional layer.

The lecture's example: "a fully connected layer on a 200x200 image with 25K hidden units needs about
1 billion weights; with 10x10 receptive fields it needs about 2.5 million". The 2.5 million is the
*locally connected* layer: each of the 25,000 hidden units has its own 10x10 weights (no sharing).
Sharing the 10x10 kernel over all positions (a convolution) leaves 100 weights per feature map,
however many positions the map has: 100 maps need 10,000.
"""
from __future__ import annotations

from typing import Any


def fc_vs_conv(image: tuple[int, int] = (200, 200), hidden: int = 25_000, kernel: int = 10,
               channels: int = 1, maps: int = 100) -> dict[str, Any]:
    """Weight counts (biases left out) for `hidden` units on an image (H, W) with `channels` channels.

    fully_connected: H*W*C*hidden; locally_connected: hidden*kernel^2*C (each unit its own patch
    weights); convolution_per_map: kernel^2*C (one shared kernel); convolution: that times `maps`.
    `explanation` says the same in words.
    """
    h, w = image
    fully = h * w * channels * hidden
    local = hidden * kernel * kernel * channels
    per_map = kernel * kernel * channels
    conv = per_map * maps
    positions = (h - kernel + 1) * (w - kernel + 1)
    text = (
        f"A {h}x{w}x{channels} image feeding {hidden:,} hidden units:\n"
        f"  fully connected: {h}*{w}*{channels}*{hidden:,} = {fully:,} weights ({fully:.2g}): "
        f"every unit sees every pixel.\n"
        f"  locally connected, {kernel}x{kernel} receptive fields, unshared: {hidden:,}*{kernel}*{kernel}*{channels} "
        f"= {local:,} weights ({local:.2g}) -- this is the lecture's '2.5 million'.\n"
        f"  convolution, one shared {kernel}x{kernel} kernel per feature map: {per_map:,} weights per map, whatever "
        f"the number of positions ({positions:,} valid positions on {h}x{w}); {maps} maps: {conv:,} weights.\n"
        f"Local connectivity divides the count by {fully / local:,.0f}; weight sharing removes the dependence on "
        f"the number of units altogether."
    )
    return {
        "image": [h, w], "channels": channels, "hidden": hidden, "kernel": kernel, "maps": maps,
        "fully_connected": fully,
        "locally_connected": local,
        "convolution_per_map": per_map,
        "convolution": conv,
        "positions_per_map": positions,
        "lecture_2_5_million_is": "locally_connected",
        "explanation": text,
    }
