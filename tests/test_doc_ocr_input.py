"""The OCR bot's endpoint decodes only the formats the API accepts, each by its own reader, and refuses a
decompression bomb from its header before decoding a pixel (issue 14, item 7): a real endpoint process over the
serving contract, and its input_fn on real image bytes."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib

import pytest
import requests
from conftest import ROOT
from PIL import Image

from framework.endpoints import EndpointManager
from framework.models import EndpointSpec

ENDPOINT = ROOT / "bots" / "doc_ocr" / "endpoint.py"


@pytest.fixture(scope="module")
def endpoint():
    spec = importlib.util.spec_from_file_location("doc_ocr_endpoint", ENDPOINT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encoded(fmt: str, size=(40, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_eps_file_sent_to_the_ocr_endpoint_is_refused_unread(settings, store):
    # Given the OCR bot's endpoint, running as a process over the serving contract
    manager = EndpointManager(settings, store)
    served = manager.ensure_one(EndpointSpec(name="doc-ocr-input", image=f"python:{ENDPOINT}"))
    try:
        # When it is sent an EPS file (which Pillow hands to Ghostscript), under an image content type
        eps = encoded("EPS", (16, 16))
        assert eps.startswith(b"%!PS")
        answer = requests.post(served.url + "/invocations", data=eps, headers={"Content-Type": "image/png"}, timeout=30)

        # Then it answers 400 (the caller's mistake), naming the formats it reads
        assert answer.status_code == 400, answer.text
        assert "not an image in any of PNG, JPEG, TIFF, BMP, GIF" in answer.json()["error"]
        # and a PNG claiming 50000 x 50000 pixels is refused from its header, not decoded
        bomb = requests.post(served.url + "/invocations", data=png_declaring(50_000, 50_000),
                             headers={"Content-Type": "image/png"}, timeout=30)
        assert bomb.status_code == 400, bomb.text
        assert "more than 50000000 pixels: refused before decoding" in bomb.json()["error"], bomb.text
    finally:
        manager.delete("doc-ocr-input", force=True)


def test_doc_ocr_decodes_the_api_formats_only_and_caps_pixels_before_decoding(endpoint):
    # Given the formats the API takes, each is decoded
    for fmt in ("PNG", "JPEG", "TIFF", "BMP", "GIF"):
        assert endpoint.input_fn(encoded(fmt), "image/png").shape == (20, 40, 3), fmt

    # When it is sent PostScript or another format Pillow knows but the API does not take, it is refused
    for fmt in ("EPS", "PPM", "ICO", "WEBP"):
        with pytest.raises(ValueError, match="not an image in any of PNG, JPEG, TIFF, BMP, GIF"):
            endpoint.input_fn(encoded(fmt, (16, 16)), "image/png")

    # and a PNG that declares 8000 x 8000 pixels in under 200 bytes is refused by its size
    bomb = png_declaring(8000, 8000)
    assert len(bomb) < 200
    with pytest.raises(ValueError, match=f"8000 x 8000 pixels, more than {endpoint.MAX_PIXELS}: refused before"):
        endpoint.input_fn(bomb, "image/png")


def test_the_image_labeller_also_refuses_a_decompression_bomb_from_its_header():
    spec = importlib.util.spec_from_file_location("image_labeller_endpoint",
                                                  ROOT / "bots" / "image_labeller" / "endpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # 64 million pixels: under Pillow's own limit (89 million warns, 179 million refuses), over the bot's
    with pytest.raises(ValueError, match="8000 x 8000 pixels, more than 50000000: refused before"):
        module.decode_image(png_declaring(8000, 8000))
    assert module.decode_image(encoded("PNG", (300, 200))).shape == (224, 224, 3)
