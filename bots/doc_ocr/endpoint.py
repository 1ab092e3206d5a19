"""Model endpoint of the doc_ocr bot: PP-OCRv4 text detection + recognition (rapidocr, ONNX, CPU).

Served over the SageMaker contract: POST /invocations with an image body (PNG, JPEG, TIFF, BMP or
GIF, at most MAX_PIXELS) answers {"lines": [{"text", "score", "box"}, ...]} in reading order.
"""

from __future__ import annotations

import io
import json
import threading
import warnings

import numpy as np
from PIL import Image

_lock = threading.Lock()
# what the endpoint decodes (the API's formats, framework/api/formats.py), each by its own reader only: Pillow
# would otherwise try every format it knows, EPS among them, which runs Ghostscript where it is installed
FORMATS = ["PNG", "JPEG", "TIFF", "BMP", "GIF"]
# past this a page is a decompression bomb, not a document (an A4 page at 600 dpi is 35 million pixels);
# read from the header, before a byte of pixels is decoded
MAX_PIXELS = 50_000_000


def model_fn(model_dir):
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def input_fn(body, content_type):
    if not content_type.startswith("image/"):
        raise ValueError(f"send an image ({', '.join(FORMATS)}), not {content_type}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit follows, stricter
            image = Image.open(io.BytesIO(body), formats=FORMATS)  # reads the header; decoding waits for convert()
    except Image.DecompressionBombError as exc:
        raise ValueError(f"the image has more than {MAX_PIXELS} pixels: refused before decoding ({exc})") from None
    except Exception as exc:  # Pillow raises many kinds for what it cannot read
        raise ValueError(f"the body is not an image in any of {', '.join(FORMATS)}: {exc}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"the image is {width} x {height} pixels, more than {MAX_PIXELS}: refused before decoding")
    return np.array(image.convert("RGB"))


def predict_fn(image, engine):
    with _lock:  # one inference at a time: the ONNX sessions already use every core
        found, _ = engine(image)
    lines = []
    for box, text, score in found or []:
        lines.append({"text": text, "score": round(float(score), 4), "box": [[round(float(x)), round(float(y))] for x, y in box]})
    lines.sort(key=lambda line: (line["box"][0][1] // 10, line["box"][0][0]))
    return {"lines": lines}


def output_fn(prediction, accept):
    return json.dumps(prediction, ensure_ascii=False), "application/json"
