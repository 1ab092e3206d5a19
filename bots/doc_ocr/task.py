"""The doc_ocr bot: read a document image, OCR it on the bot's endpoint, return its text.

The returned dict is written to s3://<output>/<file key>.json; its "labels" (the distinct
words found) are indexed, so `labels:invoice` finds every document that mentions an invoice.
"""

import json
import re

from framework import bot

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def main_task(file_name):
    image = bot.read_input(file_name)
    suffix = file_name[file_name.rfind("."):].lower()
    answer = json.loads(bot.invoke_endpoint(image, content_type=CONTENT_TYPES.get(suffix, "image/png")))
    lines = answer["lines"]
    words = []
    for line in lines:
        for word in re.findall(r"[A-Za-z][A-Za-z0-9'-]{2,}", line["text"]):
            if word.lower() not in words:
                words.append(word.lower())
    return {
        "text": "\n".join(line["text"] for line in lines),
        "lines": lines,
        "mean_score": round(sum(l["score"] for l in lines) / len(lines), 4) if lines else 0.0,
        "labels": words[:64],
    }
