"""The image_labeller bot: label a photo with its top-5 ImageNet classes on the bot's endpoint.

The returned dict is written to s3://<output>/<file key>.json; its "labels" (the five class
names, best first) are indexed, so `labels:"tabby, tabby cat"` finds the photos of tabby cats.
"""

import json

from framework import bot

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
}


def main_task(file_name):
    image = bot.read_input(file_name)
    suffix = file_name[file_name.rfind("."):].lower() if "." in file_name else ""
    answer = json.loads(bot.invoke_endpoint(image, content_type=CONTENT_TYPES.get(suffix, "application/octet-stream")))
    top = answer["labels"]
    return {
        "labels": [entry["label"] for entry in top],
        "scores": [entry["score"] for entry in top],
        "top5": "; ".join(entry["label"] for entry in top),  # "; ": class names hold commas
    }
