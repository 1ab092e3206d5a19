"""Real photos for the real-model figure: derived by crops and flips from the photographs scikit-image ships.

No download: skimage.data's photographs that come inside the wheel (a cat, coffee, a rocket, an
astronaut, coins, a camera man, the moon, a clock, textures, microscope and telescope images).
Each derived photo is a random crop (40-100 % of each side, seeded, so every run makes the same
set), mirrored every other time, at most 640 pixels on its long side, saved as JPEG.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

SOURCES = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket", "hubble_deep_field", "immunohistochemistry",
           "moon", "clock", "brick", "grass", "gravel", "retina")


def originals() -> list[np.ndarray]:
    """The shipped photographs that load offline, as RGB arrays."""
    import skimage.data

    found = []
    for name in SOURCES:
        try:
            pixels = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - one the installed version lacks, or would download
            continue
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=2)
        found.append(np.ascontiguousarray(pixels[:, :, :3]))
    if not found:
        raise RuntimeError("scikit-image ships none of its sample photographs here: pip install scikit-image")
    return found


def derived(n: int, seed: int = 13) -> list[bytes]:
    """n JPEG photos, each a different crop (and maybe mirror image) of a shipped photograph."""
    sources, rng, out = originals(), random.Random(seed), []
    for i in range(n):
        pixels = sources[i % len(sources)]
        height, width = pixels.shape[:2]
        crop_h, crop_w = int(height * rng.uniform(0.4, 1.0)), int(width * rng.uniform(0.4, 1.0))
        top, left = rng.randint(0, height - crop_h), rng.randint(0, width - crop_w)
        piece = pixels[top:top + crop_h, left:left + crop_w]
        if (i // len(sources)) % 2:
            piece = piece[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(piece))
        image.thumbnail((640, 640))
        data = io.BytesIO()
        image.save(data, "JPEG", quality=90)
        out.append(data.getvalue())
    return out
