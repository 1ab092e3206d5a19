"""Sample documents for the doc_ocr bot: rendered pages with known text, plus real scans.

`python bots/doc_ocr/samples.py DIR` writes the images and DIR/expected.json, which maps each
rendered file to the exact text drawn on it (the scans have no known text).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DOCUMENTS = {
    "invoices/2026/INV-0042.png": ["INVOICE 2026-0042", "Bill to: Northwind Traders", "Total due: 1,250.00 EUR"],
    "invoices/2026/INV-0043.png": ["INVOICE 2026-0043", "Bill to: Contoso Pharmacy", "Total due: 87.15 EUR"],
    "letters/shipping notice.png": ["SHIPPING NOTICE", "Order 7781 left our warehouse", "Expected delivery: 3 December"],
    "forms/id card+front.png": ["IDENTITY CARD", "Surname: Moreau", "Given names: Claire Anne"],
    "reports/été/summary.png": ["QUARTERLY SUMMARY", "Revenue grew 12 percent", "Costs fell 3 percent"],
}


def render(lines: list[str]) -> Image.Image:
    font = ImageFont.load_default(size=44)
    image = Image.new("RGB", (1100, 120 + 90 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(lines):
        draw.text((60, 60 + 90 * row), text, fill="black", font=font)
    return image


def write_samples(folder: Path) -> dict[str, str]:
    """Write every sample under folder; returns {relative path: expected text or ''}."""
    expected = {}
    for name, lines in DOCUMENTS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        render(lines).save(path)
        expected[name] = "\n".join(lines)
    try:
        from skimage import data

        scans = {"scans/page.png": data.page(), "scans/text-photo.png": data.text()}
    except ImportError:
        scans = {}
    for name, pixels in scans.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        expected[name] = ""
    (folder / "notes.txt").write_text("not a document image: the bot's file types leave it out\n")
    (folder / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False))
    return expected


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "samples")
    for name in write_samples(out):
        print(out / name)
