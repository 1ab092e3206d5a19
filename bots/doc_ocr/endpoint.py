"""Model endpoint of the doc_ocr bot: PP-OCRv4 text detection + recognition (rapidocr, ONNX, CPU).

Served over the SageMaker contract: POST /invocations with an image body (image/png,
image/jpeg) answers {"lines": [{"text", "score", "box"}, ...]} in reading order.
"""

from __future__ import annotations

import io
import json
import threading

import numpy as np
from PIL import Image

_lock = threading.Lock()


def model_fn(model_dir):
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def input_fn(body, content_type):
    if not content_type.startswith("image/"):
        raise ValueError(f"send an image (image/png or image/jpeg), not {content_type}")
    return np.array(Image.open(io.BytesIO(body)).convert("RGB"))


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
