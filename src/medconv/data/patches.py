"""Pixel-centred patch sampling for patch-classifier segmentation (Ciresan et al. 2012 style).

Patches are cut on the fly from images mirror-padded once, no patch files: with r = patch // 2,
each image is padded by r with ``np.pad(mode="reflect")`` (mirror without repeating the edge
pixel), so the patch centred at (y, x) of the original image is ``padded[:, y:y+patch, x:x+patch]``.
The label of a patch is the class of its centre pixel.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medconv.data.segmentation import SegImage
from medconv.errors import UserError

BALANCE = ("class", "none")


def _int64_seed(generator: torch.Generator) -> np.random.Generator:
    """A numpy Generator seeded from one draw of `generator` (so torch seeds fix numpy draws)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


class PatchSampler:
    """Draws (patch, centre class) pairs from labelled images.

    images: SegImages with masks (the train split). patch: odd side in px, 3 <= patch <= 2 * the
    smallest image side (the mirrored border patch // 2 must be narrower than the image, so every
    border is one reflection). balance: "class" draws each class equally often, then a centre
    uniformly among that class's pixels inside the roi; "none" draws centres uniformly among all
    roi pixels. seed: for `sample` calls without a generator.
    """

    def __init__(self, images: Sequence[SegImage], patch: int, balance: str = "class", seed: int = 0):
        if not images:
            raise UserError("patch sampling needs at least one training image")
        for im in images:
            if im.mask is None:
                raise UserError(f"image {im.name} has no mask: patch sampling needs labelled images")
        side = min(min(im.image.shape[1:]) for im in images)
        if int(patch) != patch or patch < 3 or patch % 2 == 0:
            raise UserError(f"patch size {patch} must be an odd integer >= 3, so the patch has a centre "
                            f"pixel (e.g. {max(3, int(patch) | 1)})")
        if patch > side:
            raise UserError(f"patch size {patch} is larger than the smallest image ({side} px): a patch must fit "
                            f"in the image (borders are mirror-padded by patch // 2); use a patch of at most "
                            f"{side if side % 2 else side - 1}")
        if balance not in BALANCE:
            raise UserError(f"balance '{balance}' is not one of {', '.join(BALANCE)}")
        self.patch, self.balance, self.radius = int(patch), balance, int(patch) // 2
        self.generator = torch.Generator().manual_seed(seed)
        r = self.radius
        self.padded = [np.pad(im.image, ((0, 0), (r, r), (r, r)), mode="reflect") for im in images]
        self.masks = [im.mask for im in images]
        # soft targets (proximity maps) label the patches instead of the mask's classes when every image has one
        self.targets = [im.target for im in images] if all(im.target is not None for im in images) else None
        self.widths = np.array([im.mask.shape[1] for im in images], dtype=np.int64)
        sizes = np.array([im.mask.size for im in images], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])  # global pixel index of each image's start
        flat = np.concatenate([np.where(im.roi, im.mask, -1).ravel() if im.roi is not None else im.mask.ravel()
                               for im in images])
        self.num_classes = int(flat.max()) + 1
        # per class, the global indices of its in-roi pixels, sorted (so pools repeat exactly)
        self.pools = [np.flatnonzero(flat == c) for c in range(self.num_classes)]
        self.pools = [p for p in self.pools if p.size] if balance == "class" else [np.flatnonzero(flat >= 0)]
        if not self.pools or not self.pools[0].size:
            raise UserError("no labelled pixels inside the regions of interest: nothing to sample")
        self.hard, self.hard_fraction = np.zeros(0, dtype=np.int64), 0.0

    def add_hard(self, pixels: np.ndarray, fraction: float) -> None:
        """Hard examples: centres (M, 3) (image index, y, x) drawn as `fraction` of every sample (each
        labelled by its own pixel as usual), the rest as before; e.g. a first detector's false positives."""
        if not 0 <= fraction < 1:
            raise UserError(f"the hard-example fraction must be in [0, 1), got {fraction}")
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 3)
        self.hard = np.sort(self.offsets[pixels[:, 0]] + pixels[:, 1] * self.widths[pixels[:, 0]] + pixels[:, 2])
        self.hard_fraction = fraction if len(self.hard) else 0.0

    def centres(self, n: int, generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n random centres -> (image index, y, x), each (n,) int64, in original-image coordinates."""
        g = generator if generator is not None else self.generator
        which = torch.randint(0, len(self.pools), (n,), generator=g).numpy()
        if self.hard_fraction:  # only then a draw more, so samplers without hard examples repeat exactly
            which[torch.rand(n, generator=g).numpy() < self.hard_fraction] = len(self.pools)
        rng = _int64_seed(g)
        idx = np.empty(n, dtype=np.int64)
        for k, pool in enumerate([*self.pools, self.hard] if self.hard_fraction else self.pools):
            sel = which == k
            idx[sel] = pool[rng.integers(0, pool.size, int(sel.sum()))]
        img = np.searchsorted(self.offsets, idx, side="right") - 1
        y, x = np.divmod(idx - self.offsets[img], self.widths[img])
        return img, y, x

    def extract(self, img: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (n, C, patch, patch) float32 centred at (y, x) of images `img`, and centre classes (n,)
        int64 (or, with soft targets, the centres' foreground probabilities (n,) float32)."""
        p = self.patch
        patches = np.stack([self.padded[i][:, a:a + p, b:b + p] for i, a, b in zip(img, y, x)]) if len(img) else \
            np.zeros((0, self.padded[0].shape[0], p, p), np.float32)
        if self.targets is not None:
            labels = np.array([self.targets[i][a, b] for i, a, b in zip(img, y, x)], dtype=np.float32)
        else:
            labels = np.array([self.masks[i][a, b] for i, a, b in zip(img, y, x)], dtype=np.int64)
        return torch.from_numpy(patches), torch.from_numpy(labels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n random patches (n, C, patch, patch) float32 and their centre labels (n,), as `extract`."""
        return self.extract(*self.centres(n, generator))


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) drawn on the generator's device (torch's default one if None), moved to `device`."""
    return torch.rand(shape, generator=generator, device=generator.device if generator else "cpu").to(device)


def _rbf(size: int, spacing: float, device, dtype) -> torch.Tensor:
    """(size, G) weights blending G control points, `spacing` px apart, into `size` pixels (rows sum to 1)."""
    g = max(2, round((size - 1) / spacing) + 1)
    pts = torch.linspace(0, size - 1, g, device=device, dtype=dtype)
    w = torch.exp(-0.5 * ((torch.arange(size, device=device, dtype=dtype)[:, None] - pts) / spacing) ** 2)
    return w / w.sum(1, keepdim=True)


def augment_patches(x: torch.Tensor, generator: torch.Generator | None = None, flips: bool = True,
                    rot90: bool = True, elastic: float = 0.0, intensity: float = 0.0,
                    elastic_spacing: float = 8.0, colour: float = 0.0) -> torch.Tensor:
    """Randomly augment square patches x (N, C, P, P) in [0, 1], each independently; same shape out.

    flips: horizontal and vertical flips (p = 0.5 each); rot90: k * 90 degrees. Both map the centre
    pixel onto itself, so the centre label stays valid. elastic: max displacement in px of a smooth
    random field (random control points every `elastic_spacing` px, blended by Gaussians); the field's
    value at the centre is subtracted, so the centre pixel stays fixed. intensity: contrast and
    brightness change up to +-intensity (x -> (x - mean) * c + mean + b, clamped to [0, 1]). colour: the
    same change drawn for each channel apart, up to +-colour (stain variation between H&E slides).
    """
    n, dev = x.shape[0], x.device
    if n == 0:
        return x
    x = x.clone()
    if flips:
        for dim in (-1, -2):
            sel = _rand(n, generator, dev) < 0.5
            x[sel] = x[sel].flip(dim)
    if rot90:
        k = (_rand(n, generator, dev) * 4).long().clamp_(max=3)
        for j in (1, 2, 3):
            sel = k == j
            x[sel] = torch.rot90(x[sel], j, (-2, -1))
    if elastic > 0:
        h, w = x.shape[-2:]
        ay, ax = _rbf(h, elastic_spacing, dev, x.dtype), _rbf(w, elastic_spacing, dev, x.dtype)
        noise = _rand((n, 2, ay.shape[1], ax.shape[1]), generator, dev).to(x.dtype) * 2 - 1
        field = torch.einsum("hg,nkgl,wl->nkhw", ay, noise, ax)  # smooth: a Gaussian blend of control points
        field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8) * elastic
        field = field - field[:, :, h // 2: h // 2 + 1, w // 2: w // 2 + 1]  # centre stays put
        ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=x.dtype),
                                torch.arange(w, device=dev, dtype=x.dtype), indexing="ij")
        gx = (xs + field[:, 0]) * (2 / max(w - 1, 1)) - 1
        gy = (ys + field[:, 1]) * (2 / max(h - 1, 1)) - 1
        x = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="reflection",
                          align_corners=True)
    if intensity > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = 1 + (_rand(n, generator, dev) * 2 - 1).view(n, 1, 1, 1) * intensity
        b = (_rand(n, generator, dev) * 2 - 1).view(n, 1, 1, 1) * intensity
        x = ((x - mean) * c + mean + b).clamp_(0, 1)
    if colour > 0:
        size, mean = (n, x.shape[1], 1, 1), x.mean(dim=(2, 3), keepdim=True)
        c = 1 + (_rand(size, generator, dev) * 2 - 1) * colour
        b = (_rand(size, generator, dev) * 2 - 1) * colour
        x = ((x - mean) * c + mean + b).clamp_(0, 1)
    return x


def class_weights(images: Sequence[SegImage], classes: Sequence[str] | int) -> torch.Tensor:
    """Inverse-frequency class weights (K,) float32 over labelled roi pixels, mean 1 over present classes.

    w_c = total / (K_present * count_c); classes with no pixels get weight 0.
    """
    k = classes if isinstance(classes, int) else len(classes)
    counts = np.zeros(k, dtype=np.float64)
    for im in images:
        if im.mask is not None:
            m = im.mask[im.roi] if im.roi is not None else im.mask.ravel()
            counts += np.bincount(m, minlength=k)[:k]
    present = counts > 0
    w = np.where(present, counts.sum() / (max(int(present.sum()), 1) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)
