"""The augmentation grammar every trainer shares (--augment): presets or KEY=VALUE pairs, torch-free so
that configurations can be checked without importing torch; `data.transforms` and `data.patches` apply it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import UserError

TTA_MODES = ("none", "flip", "d4")  # test-time augmentation: the image, + its flip, + its 8 flips and turns


@dataclass
class AugmentConfig:
    """Random augmentation, one grammar for every trainer; every field off by default.

    Whole images (classification, `augment`): hflip/vflip: probability of a horizontal/vertical flip;
    rotate: max degrees (uniform +-); rotate90: random multiples of 90 degrees; translate: max shift as a
    fraction of the size (the random-crop equivalent); scale: max relative zoom (+-); brightness/contrast:
    max relative change (+-), applied to [0, 1] intensities.
    Patches and tiles with their labels (segmentation and detection, `data.patches.augment_patches`):
    flips: horizontal and vertical flips (p 0.5 each); rot90: k x 90 degrees; elastic: max displacement
    in px of a smooth random field; intensity: contrast and brightness +-; colour: the same per channel.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rotate: float = 0.0
    rotate90: bool = False
    translate: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    flips: bool = False
    rot90: bool = False
    elastic: float = 0.0
    intensity: float = 0.0
    colour: float = 0.0

    @property
    def geometric(self) -> bool:
        return bool(self.hflip or self.vflip or self.rotate or self.rotate90 or self.translate or self.scale)

    def patch_options(self) -> dict:
        """The keyword arguments of data.patches.augment_patches."""
        return {k: getattr(self, k) for k in TASK_KEYS["segmentation"]}


PRESETS = {
    "none": AugmentConfig(),
    "light": AugmentConfig(hflip=0.5, rotate=10, translate=0.06),
    "strong": AugmentConfig(hflip=0.5, rotate=15, translate=0.1, scale=0.1, brightness=0.1, contrast=0.1),
    "histology": AugmentConfig(hflip=0.5, vflip=0.5, rotate90=True, translate=0.06, brightness=0.1, contrast=0.1),
}
# which keys each kind of trainer applies (segmentation's must keep the centre pixel's label valid)
TASK_KEYS = {"classification": ("hflip", "vflip", "rotate", "rotate90", "translate", "scale", "brightness",
                                "contrast"),
             "segmentation": ("flips", "rot90", "elastic", "intensity", "colour")}


def parse_augment(spec: str, task: str | None = None) -> AugmentConfig:
    """A preset name (none, light, strong, histology) or KEY=VALUE pairs, e.g. "hflip=0.5,rotate=15" or
    "flips=1,rot90=1,elastic=4"; with `task` (classification, segmentation), keys that trainer does not
    apply are refused with one line naming the ones it does."""
    fields = {f.name: f.type for f in dataclasses.fields(AugmentConfig)}
    if spec in PRESETS:
        out = PRESETS[spec]
    else:
        values = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = item.partition("=")
            if key not in fields:
                raise UserError(f"--augment {spec!r}: expected a preset ({', '.join(PRESETS)}) or KEY=VALUE pairs "
                                f"with keys {', '.join(fields)}")
            try:
                if fields[key] == "bool":
                    words = {"": True, "true": True, "yes": True, "false": False, "no": False}
                    values[key] = words[value.lower()] if value.lower() in words else float(value) != 0
                else:
                    values[key] = float(value)
            except ValueError:
                raise UserError(f"--augment {spec!r}: {key} needs a number, got {value!r}") from None
            if fields[key] != "bool" and not (math.isfinite(values[key]) and values[key] >= 0):
                raise UserError(f"--augment {spec!r}: {key} must be a number >= 0, got {value!r}")
        out = AugmentConfig(**values)
    if task is not None:
        used = [k for k in fields if getattr(out, k) != getattr(PRESETS["none"], k) and k not in TASK_KEYS[task]]
        if used:
            raise UserError(f"--augment {spec!r}: {', '.join(used)} cannot be applied to {task}; its keys are "
                            f"{', '.join(TASK_KEYS[task])}")
    return out
